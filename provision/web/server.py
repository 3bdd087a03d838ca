"""The web application of one classroom, and `classroom web`'s serving loop.

It only reads the classroom and calls the core's commands: stopping it (Ctrl-C) closes the
terminals' SSH sessions and leaves the classroom as it was.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

import tornado.httpserver
import tornado.web

from ..errors import BadInput
from . import api
from .access import LoginLimiter, Sessions, admin_token, class_code
from .seats import SeatBook
from .service import ClassroomService
from .terminal import TerminalHandler, Terminals

CLOSE_SECONDS = 10.0
# Tornado's access log would print every refused request, the trainer URL's token among them.
logging.getLogger("tornado.access").setLevel(logging.ERROR)


@dataclass
class WebInfo:
    """What `classroom web` tells the trainer once it listens."""

    student_url: str
    trainer_url: str
    class_code: str | None
    tls: bool
    warnings: list[str] = field(default_factory=list)


def parse_listen(text: str) -> tuple[str, int]:
    """`ADDR:PORT` (`[::1]:8000` for IPv6) -> (address, port); BadInput otherwise."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    try:
        if not host:
            raise ValueError
        ipaddress.ip_address(host)
        number = int(port)
        if not 1 <= number <= 65535:
            raise ValueError
    except ValueError:
        raise BadInput(f"--listen: {text!r} is not ADDR:PORT, like 127.0.0.1:8000 or 0.0.0.0:8443") from None
    return host, number


def xterm_folder() -> Path:
    """xterm.js as the `webssh` package (PyPI) ships it: served from where pip put it."""
    spec = find_spec("webssh")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("the web extra is not installed: pip install 'classroom[web]'")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@cache
def _page_text(name: str) -> str:
    return resources.files(__package__).joinpath("pages", name).read_text(encoding="utf-8")


class WebApp:
    """Everything the handlers share: the classroom, the sessions, the secrets."""

    def __init__(self, room, *, tls: bool = False, student_url: str = ""):
        state_dir = room.state.path
        self.service = ClassroomService(room)
        self.sessions = Sessions()
        self.limiter = LoginLimiter()
        self.terminals = Terminals()
        self.seats = SeatBook(state_dir)
        self.admin_token = admin_token(state_dir)
        self.self_service = room.config.web.self_service
        self.class_code = class_code(state_dir)
        self.tls = tls
        self.student_url = student_url

    def page(self, name: str) -> str:
        return _page_text(name)

    def application(self) -> tornado.web.Application:
        static = str(resources.files(__package__).joinpath("static"))
        return tornado.web.Application([
            (r"/", api.SeatPage),
            (r"/me", api.StudentPage),
            (r"/trainer", api.TrainerPage),
            (r"/api/web", api.PublicHandler),
            (r"/api/login", api.LoginHandler),
            (r"/api/claim", api.ClaimHandler),
            (r"/api/logout", api.LogoutHandler),
            (r"/api/me", api.MeHandler),
            (r"/api/roster/([^/]+)", api.RosterEntryHandler),
            (r"/api/class", api.ClassHandler),
            (r"/api/status", api.StatusHandler),
            (r"/api/progress", api.ProgressHandler),
            (r"/api/reset/([^/]+)", api.ResetHandler),
            (r"/api/extend", api.ExtendHandler),
            (r"/api/terminal", TerminalHandler),
            (r"/static/app/(.*)", tornado.web.StaticFileHandler, {"path": static}),
            (r"/static/xterm/(.*)", tornado.web.StaticFileHandler, {"path": str(xterm_folder())}),
        ], web=self, default_handler_class=api.NotFound, websocket_ping_interval=30)

    def close(self) -> None:
        self.terminals.close_all()
        self.service.close()


def tls_context(room) -> ssl.SSLContext | None:
    web = room.config.web
    cert, key = room.config.web_path(web.tls_cert), room.config.web_path(web.tls_key)
    if cert is None or key is None:
        return None
    for what, path in (("tls_cert", cert), ("tls_key", key)):
        if not path.is_file():
            raise BadInput(f"web.{what}: no such file: {path}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise BadInput(f"web.tls_cert/web.tls_key: cannot be used: {exc}") from None
    return context


def url_host(room, address: str) -> str:
    """The host name to print in URLs: the address listened on, or for a wildcard the classroom's
    public address (local) or this machine's name."""
    if ipaddress.ip_address(address).is_unspecified:
        return room.config.local.public_host if room.config.backend == "local" else os.uname().nodename
    return f"[{address}]" if ":" in address else address


def serve(room, listen: str, on_ready: Callable[[WebInfo], None]) -> None:
    """Serve until interrupted. `on_ready` gets the URLs once the port is open."""
    from ..commands import require_record

    address, port = parse_listen(listen)
    require_record(room)
    context = tls_context(room)
    asyncio.run(_serve(room, address, port, context, on_ready))


async def _serve(room, address: str, port: int, context: ssl.SSLContext | None,
                 on_ready: Callable[[WebInfo], None]) -> None:
    base = f"{'https' if context else 'http'}://{url_host(room, address)}:{port}"
    web = WebApp(room, tls=context is not None, student_url=f"{base}/")
    server = tornado.httpserver.HTTPServer(web.application(), ssl_options=context)
    try:
        server.listen(port, address)
    except OSError as exc:
        raise BadInput(f"--listen: cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    warnings = []
    if context is None and not ipaddress.ip_address(address).is_loopback:
        warnings.append(f"no TLS (web.tls_cert, web.tls_key): students' passwords cross the network in clear "
                        f"to {address}:{port}")
    # Ctrl-C (or SIGTERM) ends the wait below rather than raising inside the loop: open
    # connections (keep-alive, terminals) are then closed in order, and nothing else is touched.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        on_ready(WebInfo(f"{base}/", f"{base}/trainer?token={web.admin_token}",
                         web.class_code if web.self_service else None, context is not None, warnings))
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        server.stop()
        web.close()
        await asyncio.wait_for(server.close_all_connections(), CLOSE_SECONDS)
