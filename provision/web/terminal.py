"""The terminal: a WebSocket that carries a shell on the signed-in student's OWN host.

The host, its address and its port come from the classroom (the backend), never from the
browser; the session logs in as the student with their own password, over the host key the
classroom pinned (ssh.student_connection), exactly as their `ssh` would. Closing the WebSocket
(tab closed, network gone, server stopped) closes the channel and the SSH connection, so sshd
ends the student's session on the host.

Messages from the browser are JSON: {"data": "keys"} or {"resize": [cols, rows]}; what the host
prints goes back as binary frames, which xterm.js draws (it is the student's own terminal).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tornado.ioloop
import tornado.websocket

from ..errors import last_line
from ..ssh import open_with_retry, student_connection
from .api import COOKIE
from .errors import WebError

if TYPE_CHECKING:
    from fabric import Connection
    from paramiko import Channel

    from .server import WebApp

CONNECT_SECONDS = 15.0
TERMINALS_PER_STUDENT = 4  # a few tabs, not a way to open hundreds of sessions
READ_BYTES = 65536


def open_shell(connection: Connection, cols: int, rows: int) -> Channel:
    open_with_retry(connection, CONNECT_SECONDS)
    channel = connection.transport.open_session()
    channel.get_pty(term="xterm-256color", width=cols, height=rows)
    channel.invoke_shell()
    return channel


def _size(value: Any, default: int, most: int) -> int:
    return value if isinstance(value, int) and 1 <= value <= most else default


class TerminalHandler(tornado.websocket.WebSocketHandler):
    # check_origin: Tornado's own (the page's origin must be this server) stands.

    def initialize(self) -> None:
        self.connection: Connection | None = None
        self.channel: Channel | None = None
        self.student: str | None = None
        self._closed = False

    @property
    def web(self) -> WebApp:
        return self.application.settings["web"]

    async def open(self) -> None:
        session = self.web.sessions.get(self.get_cookie(COOKIE))
        if session is None or session.student is None:
            self.close(4401, "sign in first")
            return
        student = session.student
        if self.web.terminals.count(student) >= TERMINALS_PER_STUDENT:
            self.close(4429, f"at most {TERMINALS_PER_STUDENT} terminals at once: close one")
            return
        self.student = student
        self.web.terminals.add(self)
        cols = _size(self._int_argument("cols"), 80, 500)
        rows = _size(self._int_argument("rows"), 24, 200)
        try:
            service = self.web.service
            machine, password, host_key = await service.in_thread(service.shell_target, student, shell=True)
            self.connection = student_connection(machine, student, password, host_key)
            self.channel = await service.in_thread(open_shell, self.connection, cols, rows, shell=True)
        except WebError as exc:
            self._fail(exc.message)
            return
        except Exception as exc:  # any failure to reach the host: said in the terminal, then closed
            self._fail(f"cannot open a shell on your machine: {last_line(exc)}")
            return
        if self._closed:  # the browser left while the session opened
            self._release()
            return
        tornado.ioloop.IOLoop.current().add_handler(self.channel.fileno(), self._readable, tornado.ioloop.IOLoop.READ)

    def _int_argument(self, name: str) -> int | None:
        value = self.get_query_argument(name, "")
        return int(value) if value.isdigit() else None

    def _fail(self, message: str) -> None:
        if not self._closed:
            self.write_message(f"\r\n{message}\r\n".encode(), binary=True)
            self.close(4500, message[:120])
        self._release()

    def _readable(self, _fd: int, _events: int) -> None:
        channel = self.channel
        if channel is None:
            return
        if channel.recv_ready():
            data = channel.recv(READ_BYTES)
            if data:
                try:
                    self.write_message(data, binary=True)
                except tornado.websocket.WebSocketClosedError:
                    self._release()
                return
        if channel.closed or channel.eof_received or channel.exit_status_ready():
            self.close(1000, "the shell ended")  # `exit` in the terminal
            self._release()

    def on_message(self, message: str | bytes) -> None:
        channel = self.channel
        if channel is None:
            return
        try:
            payload = json.loads(message)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        data = payload.get("data")
        if isinstance(data, str) and data:
            channel.sendall(data.encode("utf-8"))
        size = payload.get("resize")
        if isinstance(size, list) and len(size) == 2:
            channel.resize_pty(width=_size(size[0], 80, 500), height=_size(size[1], 24, 200))

    def on_close(self) -> None:
        self._closed = True
        self._release()

    def _release(self) -> None:
        """Give the SSH session back: the channel, then the connection (sshd ends the session)."""
        channel, connection = self.channel, self.connection
        self.channel = self.connection = None
        if channel is not None:
            try:
                tornado.ioloop.IOLoop.current().remove_handler(channel.fileno())
            except Exception:  # already removed: nothing to give back
                pass
            channel.close()
        if connection is not None:
            connection.close()
        self.web.terminals.discard(self)


class Terminals:
    """The open terminals, so that a student has a few at most and the server closes them all."""

    def __init__(self) -> None:
        self._open: set[TerminalHandler] = set()

    def add(self, terminal: TerminalHandler) -> None:
        self._open.add(terminal)

    def discard(self, terminal: TerminalHandler) -> None:
        self._open.discard(terminal)

    def count(self, student: str) -> int:
        return sum(1 for t in self._open if t.student == student)

    def __len__(self) -> int:
        return len(self._open)

    def close_all(self) -> None:
        for terminal in list(self._open):
            terminal._release()
            terminal.close(1001, "the server stopped")
