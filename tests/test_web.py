"""`classroom progress` and `classroom web` against a real classroom on the engine (issue 13).

One small classroom (2 students, exercises, checks, self-service seats) serves the module; the
web server is the real command, `classroom web`, in its own process, asked with a real HTTP
client (httpx) and a real WebSocket client (Tornado's). Only 127.0.0.1 is ever dialled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, Cli, free_port_base, remove_classroom_resources, ssh_connect, ssh_run, unique_name, \
    write_classroom_file

httpx = pytest.importorskip("httpx")
pytest.importorskip("tornado")

pytestmark = pytest.mark.engine

CHECKS = {
    "01-hello": 'test -f "$HOME/done.txt"\n',
    "02-answer": 'test "$(cat answer.txt 2>/dev/null)" = 42\n',  # run from the student's home
}


@dataclass
class Web:
    """A running `classroom web`: its process, URLs and class code."""

    process: subprocess.Popen
    base: str
    trainer_url: str
    class_code: str | None
    output: list[str]

    def client(self, **kwargs) -> httpx.Client:
        kwargs.setdefault("verify", False)  # the TLS test's certificate is self-signed
        return httpx.Client(base_url=self.base, timeout=120, follow_redirects=False, **kwargs)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.output.extend(self.process.stdout.read().splitlines())
        return self.process.returncode


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_web(cli: Cli, folder: Path, *, address: str = "127.0.0.1", file: Path | None = None,
              scheme: str = "http") -> Web:
    """`classroom web --listen ADDRESS:PORT` in its own process, once it printed its URLs."""
    port = free_local_port()
    env = {**os.environ, "CLASSROOM_HOME": str(cli.home), "NO_COLOR": "1", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    options = ["-f", str(file)] if file else []
    process = subprocess.Popen([sys.executable, "-m", "provision.cli", *options, "web", "--listen", f"{address}:{port}"],
                               cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    while not any(line.startswith("Ctrl-C") for line in lines):
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"`classroom web` ended: exit {process.wait()}\n" + "\n".join(lines))
        lines.append(line.rstrip("\n"))
    fields = dict(line.split(": ", 1) for line in lines if ": " in line)
    return Web(process, f"{scheme}://127.0.0.1:{port}", fields["Trainer"].strip(),
               fields.get("Class code (self-service seats)"), lines)


@dataclass
class Room:
    name: str
    cli: Cli
    folder: Path
    engine: object

    def roster(self) -> dict[str, dict]:
        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        return {row["student"]: row for row in json.loads(run.stdout)}

    def as_student(self, student: str, command: str) -> str:
        row = self.roster()[student]
        session = ssh_connect(row["port"], row["user"], row["password"])
        try:
            code, out, err = ssh_run(session, command)
        finally:
            session.close()
        assert code == 0, f"{command}: {out}{err}"
        return out

    def root(self, host: str, command: str) -> str:
        (container,) = self.engine.containers.list(
            filters={"label": [f"classroom.name={self.name}", f"classroom.host={host}"]})
        _code, out = container.exec_run(["sh", "-c", command])
        return out.decode(errors="replace")


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory, tiny_image):
    folder = tmp_path_factory.mktemp("web")
    (folder / "exercises").mkdir()
    (folder / "exercises" / "hello.txt").write_text("hello\n")
    for name, text in CHECKS.items():
        (folder / "checks" / name).mkdir(parents=True)
        (folder / "checks" / name / "check.sh").write_text(text)
    name = unique_name("t-web")
    write_classroom_file(folder, name, students=2, port_base=free_port_base(4, low=45000, high=52000),
                         extra=f"images:\n  - {tiny_image}\nexercises: ./exercises\nchecks: ./checks\n"
                               "web:\n  self_service: true\n")
    cli = Cli(folder / "home", cwd=folder)
    try:
        run = cli("up")
        assert run.exit_code == 0, run
        yield Room(name, cli, folder, engine)
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


@pytest.fixture(scope="module")
def web(room):
    server = start_web(room.cli, room.folder)
    yield server
    server.stop()


def signed_in(web: Web, room: Room, student: str) -> tuple[httpx.Client, str]:
    client = web.client()
    answer = client.post("/api/login", json={"student": student, "password": room.roster()[student]["password"]})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf"]


def as_trainer(web: Web) -> tuple[httpx.Client, str]:
    client = web.client()
    entered = client.get(web.trainer_url.removeprefix(web.base))
    assert entered.status_code == 302 and entered.headers["location"] == "/trainer", entered.text
    return client, client.get("/api/class").json()["csrf"]


# --- progress --------------------------------------------------------------------------------------
def test_progress_marks_what_each_student_finished(room):
    def matrix() -> dict[str, dict[str, bool | None]]:
        run = room.cli("progress", "--json")
        assert run.exit_code == 0, run
        data = json.loads(run.stdout)
        assert data["exercises"] == list(CHECKS)
        return {row["student"]: row["done"] for row in data["students"]}

    room.as_student("student-01", "rm -f done.txt answer.txt")
    room.as_student("student-02", "rm -f done.txt answer.txt")
    assert matrix() == {"student-01": {"01-hello": False, "02-answer": False},
                        "student-02": {"01-hello": False, "02-answer": False}}
    room.as_student("student-01", "touch done.txt && echo 42 > answer.txt")
    room.as_student("student-02", "echo 41 > answer.txt")
    assert matrix() == {"student-01": {"01-hello": True, "02-answer": True},
                        "student-02": {"01-hello": False, "02-answer": False}}
    table = room.cli("progress")
    assert table.exit_code == 0, table
    line = next(line for line in table.stdout.splitlines() if "student-01" in line)
    assert line.count("done") == 2 and "2/2" in line, table


def test_checks_never_reach_the_students(room):
    listed = room.as_student("student-01", "find ~ -name check.sh; ls ~/exercises")
    assert "check.sh" not in listed and "hello.txt" in listed


# --- the API ---------------------------------------------------------------------------------------
def test_sign_in_gives_a_student_their_own_seat_and_nothing_else(web, room):
    client = web.client()
    wrong = client.post("/api/login", json={"student": "student-01", "password": "not-it"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "wrong name or password: type them as your sheet "
                                                                 "shows them"})
    unknown = client.post("/api/login", json={"student": "student-09", "password": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"].startswith("no student-09 in this classroom")

    client, _csrf = signed_in(web, room, "student-01")
    cookie = client.cookies.jar._cookies  # noqa: SLF001
    assert cookie, "no session cookie was set"
    set_cookie = client.post("/api/login", json={"student": "1", "password": room.roster()["student-01"]["password"]}
                             ).headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    me = client.get("/api/me").json()
    roster = room.roster()["student-01"]
    assert {key: me[key] for key in roster} == roster  # the same entry as `roster --format json`
    assert client.get("/api/roster/student-01").status_code == 200
    other = client.get("/api/roster/student-02")
    assert (other.status_code, other.json()) == (403, {"error": "you can only see your own seat"})
    assert client.get("/api/status").status_code == 403
    assert client.get("/api/progress").status_code == 403
    assert client.post("/api/reset/student-02", json={"hard": False}).status_code == 403
    assert room.roster()["student-02"]["password"] not in client.get("/api/roster/student-02").text


def test_state_changing_requests_need_the_csrf_token_and_this_origin(web, room):
    client, csrf = signed_in(web, room, "student-01")
    assert client.post("/api/logout", json={}).status_code == 403  # no token
    assert client.post("/api/logout", json={}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    foreign = client.post("/api/logout", json={}, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403
    form = client.post("/api/logout", data={"a": "b"}, headers={"X-CSRF-Token": csrf})
    assert form.status_code == 415
    assert client.get("/api/me").status_code == 200  # still signed in: nothing above took effect
    assert client.post("/api/logout", json={}, headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/api/me").status_code == 401


def test_the_trainer_sees_status_and_progress_as_the_cli_does(web, room):
    client = web.client()
    assert client.get("/trainer?token=wrong").status_code == 403
    assert client.get("/api/status").status_code == 403
    client, _csrf = as_trainer(web)
    status = client.get("/api/status").json()
    run = room.cli("status", "--json")
    cli_status = json.loads(run.stdout)
    assert status.keys() == cli_status.keys()
    assert [(h["name"], h["state"], h["checks"]) for h in status["hosts"]] == \
        [(h["name"], h["state"], h["checks"]) for h in cli_status["hosts"]]
    token = web.trainer_url.split("token=", 1)[1]
    progress = web.client(headers={"Authorization": f"Bearer {token}"}).get("/api/progress")
    assert progress.json() == json.loads(room.cli("progress", "--json").stdout)
    assert client.get("/api/roster/student-02").json()["student"] == "student-02"
    token_file = room.cli.home / room.name / "web_token"
    assert token_file.read_text().strip() == token and token_file.stat().st_mode & 0o777 == 0o600


def test_the_trainer_resets_a_student_and_extends_the_class(web, room, tiny_image):
    room.as_student("student-02", f"docker run -d --name leftover {tiny_image} sleep 600")
    client, csrf = as_trainer(web)
    assert client.post("/api/reset/student-02", json={"hard": False}).status_code == 403  # no CSRF token
    answer = client.post("/api/reset/student-02", json={"hard": False}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] and answer.json()["lines"][0].startswith("student-02: clean (reset in ")
    assert "leftover" not in room.as_student("student-02", "docker ps -a --format '{{.Names}}'")
    unknown = client.post("/api/reset/student-07", json={"hard": False}, headers={"X-CSRF-Token": csrf})
    assert unknown.status_code == 404 and "no student-07" in unknown.json()["error"]
    extended = client.post("/api/extend", json={"duration": "1h"}, headers={"X-CSRF-Token": csrf})
    assert extended.status_code == 200 and " expires " in extended.json()["lines"][0], extended.text
    bad = client.post("/api/extend", json={"duration": "soon"}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 400 and bad.json()["error"].startswith("duration:")


def test_self_service_seats_record_names_until_the_class_is_full(web, room):
    client = web.client()
    wrong = client.post("/api/claim", json={"code": "NOPE", "name": "Ada"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "wrong class code: type the one on the trainer's screen")
    first = client.post("/api/claim", json={"code": web.class_code, "name": "Ada [b]Lovelace[/b]",
                                                           "seat": "student-02"})
    assert first.status_code == 200 and first.json()["student"] == "student-02", first.text
    assert client.get("/api/me").json()["name"] == "Ada [b]Lovelace[/b]"
    taken = web.client().post("/api/claim", json={"code": web.class_code, "name": "Bob", "seat": "student-02"})
    assert taken.status_code == 409 and taken.json()["error"].startswith("student-02 is already taken")
    second = web.client().post("/api/claim", json={"code": web.class_code.lower(), "name": "Grace <b>Hopper</b>"})
    assert second.status_code == 400  # no markup in names
    second = web.client().post("/api/claim", json={"code": web.class_code, "name": "Grace Hopper"})
    assert second.json()["student"] == "student-01"
    full = web.client().post("/api/claim", json={"code": web.class_code, "name": "Late"})
    assert full.status_code == 409 and full.json()["error"].startswith("the class is full: all 2 seats are taken")
    seats = room.cli.home / room.name / "seats.json"
    assert json.loads(seats.read_text()) == {"student-01": "Grace Hopper", "student-02": "Ada [b]Lovelace[/b]"}
    assert seats.stat().st_mode & 0o777 == 0o600
    assert {s: row["name"] for s, row in room.roster().items()} == {"student-01": "Grace Hopper",
                                                                   "student-02": "Ada [b]Lovelace[/b]"}
    table = room.cli("roster")  # the name as typed, never read as markup
    assert "Ada [b]Lovelace[/b]" in next(line for line in table.stdout.splitlines() if "student-02" in line)


# --- the terminal ----------------------------------------------------------------------------------
def sshd_sessions(room: Room, student: str) -> int:
    """The student's processes on their host: an SSH session is sshd's child and a shell."""
    return int(room.root(student, f"pgrep -c -u {student} || true").strip() or 0)


def screen_lines(screen: str) -> list[str]:
    """What a person sees of the terminal's output: without escape sequences, line by line."""
    from provision.untrusted import clean

    return [line.strip() for line in clean(screen.replace("\r", "")).splitlines()]


async def terminal_round(web: Web, cookie: str, command: str, seen, timeout: float = 60) -> str:
    """Type `command` in the terminal; the output until `seen(lines)` says it is there."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    request = HTTPRequest(web.base.replace("http", "ws") + "/api/terminal?cols=100&rows=30",
                          headers={"Cookie": f"classroom_session={cookie}"})
    socket_ = await websocket_connect(request)
    screen = ""
    try:
        socket_.write_message(json.dumps({"data": command + "\r"}))
        while not seen(screen_lines(screen)):
            message = await asyncio.wait_for(socket_.read_message(), timeout)
            if message is None:
                break
            screen += message.decode(errors="replace") if isinstance(message, bytes) else message
    finally:
        socket_.close()
    return screen


def test_terminal_opens_a_shell_on_the_students_own_host_and_closing_frees_it(web, room):
    client, _csrf = signed_in(web, room, "student-01")
    cookie = client.cookies["classroom_session"]
    before = sshd_sessions(room, "student-01")

    def answered(lines: list[str]) -> bool:  # `hostname`, then `id -un`: the host's name, then the user
        return any(lines[i:i + 2] == ["student-01", "student-01"] for i in range(len(lines)))

    screen = asyncio.run(terminal_round(web, cookie, "hostname; id -un", answered))
    assert answered(screen_lines(screen)), screen
    for _ in range(100):  # the session ends once the WebSocket is closed (not a timing claim)
        if sshd_sessions(room, "student-01") == before:
            break
        time.sleep(0.2)
    assert sshd_sessions(room, "student-01") == before


def test_terminal_refuses_who_has_not_signed_in_and_other_sites(web, room):
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    url = web.base.replace("http", "ws") + "/api/terminal"

    async def anonymous():
        socket_ = await websocket_connect(url)
        message = await socket_.read_message()
        return message, socket_.close_code, socket_.close_reason

    assert asyncio.run(anonymous()) == (None, 4401, "sign in first")

    client, _csrf = signed_in(web, room, "student-01")
    cookie = client.cookies["classroom_session"]

    async def from_another_site():  # a page elsewhere, in the student's browser, with their cookie
        await websocket_connect(HTTPRequest(url, headers={"Cookie": f"classroom_session={cookie}",
                                                          "Origin": "http://evil.example"}))

    with pytest.raises(HTTPClientError, match="403"):
        asyncio.run(from_another_site())


# --- the server ------------------------------------------------------------------------------------
def hold_terminal(web: Web, cookie: str) -> tuple[threading.Thread, threading.Event]:
    """A terminal kept open in a thread of its own until the server closes it; the event is set
    once its prompt showed."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    prompted = threading.Event()

    async def hold():
        socket_ = await websocket_connect(HTTPRequest(web.base.replace("http", "ws") + "/api/terminal",
                                                      headers={"Cookie": f"classroom_session={cookie}"}))
        screen = ""
        while (message := await socket_.read_message()) is not None:
            screen += message.decode(errors="replace") if isinstance(message, bytes) else message
            if screen_lines(screen) and screen_lines(screen)[-1].endswith("$"):
                prompted.set()

    thread = threading.Thread(target=lambda: asyncio.run(hold()), daemon=True)
    thread.start()
    return thread, prompted


def test_logins_are_rate_limited_per_address_and_ctrl_c_closes_terminals_and_leaves_the_classroom(room):
    server = start_web(room.cli, room.folder)  # its own server: the limit would hold up the others
    before = sshd_sessions(room, "student-02")
    try:
        client, _csrf = signed_in(server, room, "student-02")
        terminal, prompted = hold_terminal(server, client.cookies["classroom_session"])
        assert prompted.wait(120), "the terminal never showed a prompt"
        assert sshd_sessions(room, "student-02") > before
        client = server.client()
        codes = [client.post("/api/login", json={"student": "student-02", "password": f"guess-{i}"}).status_code
                 for i in range(6)]
        assert codes == [401] * 5 + [429]
        right = client.post("/api/login", json={"student": "student-02",
                                                "password": room.roster()["student-02"]["password"]})
        assert right.status_code == 429 and right.json()["error"].startswith("too many failed sign-ins")
    finally:
        code = server.stop()
    assert code == 0 and any("untouched" in line for line in server.output), server.output
    terminal.join(30)
    assert not terminal.is_alive(), "the server stopped but left the terminal open"
    for _ in range(100):  # sshd ends the session once the connection is closed (not a timing claim)
        if sshd_sessions(room, "student-02") == before:
            break
        time.sleep(0.2)
    assert sshd_sessions(room, "student-02") == before
    status = room.cli("status")
    assert status.exit_code == 0, status


def self_signed(folder: Path) -> None:
    """cert.pem and key.pem for 127.0.0.1, made here (cryptography comes with paramiko)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))


def test_https_with_a_certificate_and_a_warning_without_one_off_loopback(room, tmp_path):
    clear = start_web(room.cli, room.folder, address="0.0.0.0")
    clear.stop()
    assert any(line.startswith("warning: no TLS (web.tls_cert, web.tls_key): students' passwords cross the network "
                               "in clear") for line in clear.output), clear.output
    quiet = start_web(room.cli, room.folder)  # loopback: nothing crosses a network
    quiet.stop()
    assert not any("warning" in line for line in quiet.output), quiet.output

    self_signed(tmp_path)
    file = tmp_path / "classroom.yaml"
    file.write_text((room.folder / "classroom.yaml").read_text() + "  tls_cert: cert.pem\n  tls_key: key.pem\n")
    secure = start_web(room.cli, room.folder, file=file, scheme="https")
    try:
        assert secure.trainer_url.startswith(secure.base + "/trainer?token=")
        answer = secure.client().post("/api/login", json={"student": "student-01",
                                                          "password": room.roster()["student-01"]["password"]})
        assert answer.status_code == 200 and "Secure" in answer.headers["set-cookie"]
    finally:
        secure.stop()


# --- in a real browser -----------------------------------------------------------------------------
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DONE_GREEN, WHITE = (0xDA, 0xFB, 0xE1), (0xFF, 0xFF, 0xFF)


@pytest.fixture
def browser(tmp_path):
    """Debian's chromium, headless, driven by selenium (skipped, saying why, where either is absent)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                    "scripts/test.sh does it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, timeout: float = 90):
    """`condition(driver)` once it holds; the dashboard redraws its tables, so an element found a
    moment ago may be gone (stale): asked again then."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3,
                         ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)).until(condition)


def on_screen(driver, element) -> dict:
    """The element scrolled into view, and where it is in the window (what a screenshot shows)."""
    return driver.execute_script(
        "arguments[0].scrollIntoView({block: 'nearest'}); const r = arguments[0].getBoundingClientRect();"
        "return {x: r.x, y: r.y, width: r.width, height: r.height};", element)


def terminal_lines(driver) -> list[str]:
    return driver.execute_script("return window.classroomScreen ? window.classroomScreen() : [];")


def test_a_student_signs_in_sees_their_sheet_and_uses_the_terminal(web, room, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    row = room.roster()["student-01"]
    browser.get(web.base + "/")
    browser.find_element(By.ID, "student").send_keys("student-01")
    browser.find_element(By.ID, "password").send_keys("not the password", Keys.ENTER)
    wait_for(browser, lambda d: d.find_element(By.ID, "message").text)
    assert browser.find_element(By.ID, "message").text == "wrong name or password: type them as your sheet shows them"
    browser.find_element(By.ID, "password").clear()
    browser.find_element(By.ID, "password").send_keys(row["password"], Keys.ENTER)
    wait_for(browser, lambda d: d.find_element(By.ID, "host").text == "student-01")
    assert browser.find_element(By.ID, "ssh").text == row["ssh"]
    assert browser.find_element(By.ID, "password").text == row["password"]
    links = [a.get_attribute("href").rstrip("/") for a in browser.find_elements(By.CSS_SELECTOR, "#ports a")]
    assert links == [port["url"] for port in row.get("ports", [])]  # where they open what they publish
    wait_for(browser, lambda d: d.find_element(By.ID, "terminal-state").text == "connected")
    keys = browser.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    keys.send_keys("hostname; docker ps", Keys.ENTER)
    wait_for(browser, lambda d: "student-01" in [line.strip() for line in terminal_lines(d)]
             and any(line.startswith("CONTAINER ID") for line in terminal_lines(d)))
    shot = tmp_path / "student.png"
    where = on_screen(browser, browser.find_element(By.ID, "terminal"))
    browser.save_screenshot(str(shot))
    assert_terminal_seen(shot, where)


def test_the_dashboard_follows_progress_and_its_reset_button_cleans_a_host(web, room, browser, tmp_path, tiny_image):
    from selenium.webdriver.common.by import By

    room.as_student("student-01", "touch done.txt")
    room.as_student("student-02", f"rm -f done.txt; docker run -d --name leftover {tiny_image} sleep 600")
    browser.get(web.trainer_url)
    assert browser.current_url == web.base + "/trainer"  # the token left the address bar

    def cell(student: str, exercise: int):
        return browser.find_element(By.CSS_SELECTOR, f'#progress tr[data-student="{student}"] '
                                                     f"td:nth-child({exercise + 2})")

    wait_for(browser, lambda d: cell("student-01", 1).text == "✓" and cell("student-02", 1).text == "–")
    assert wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#status tbody tr"))  # the hosts' table too
    shot = tmp_path / "dashboard.png"
    done, todo = wait_for(browser, lambda d: (on_screen(d, cell("student-01", 1)), on_screen(d, cell("student-02", 1))))
    browser.save_screenshot(str(shot))
    assert_cell_colour(shot, done, DONE_GREEN)  # app.css: td.done
    assert_cell_colour(shot, todo, WHITE)

    room.as_student("student-02", "touch done.txt")  # student-02 finishes the first exercise
    wait_for(browser, lambda d: cell("student-02", 1).text == "✓", timeout=120)

    wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, 'button.reset[data-student="student-02"]').click()
             or True)
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_for(browser, lambda d: "student-02: clean (reset in" in d.find_element(By.ID, "results").text, timeout=240)
    assert "leftover" not in room.as_student("student-02", "docker ps -a --format '{{.Names}}'")


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of a screenshot: 8-bit, non-interlaced, as Chromium writes."""
    import struct
    import zlib

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, b"", None
    while position < len(data):
        (length,), kind = struct.unpack(">I", data[position:position + 4]), data[position + 4:position + 8]
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks += body
        position += 12 + length
    width, height, depth, colour, _c, _f, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    size = 4 if colour == 6 else 3
    raw, stride, rows, previous = zlib.decompress(chunks), width * size, [], bytearray(width * size)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - size] if x >= size else 0
            up, corner = previous[x], previous[x - size] if x >= size else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                guess = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
                line[x] = (line[x] + guess) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r) for r in rows] if size == 3 else [
        b"".join(r[i:i + 3] for i in range(0, len(r), 4)) for r in rows]


def colours_in(path: Path, rect: dict) -> dict[tuple[int, int, int], int]:
    """How many pixels of each colour the screenshot has inside an element's rectangle."""
    _width, _height, rows = png_pixels(path)
    counts: dict[tuple[int, int, int], int] = {}
    for y in range(max(0, int(rect["y"]) + 2), min(len(rows), int(rect["y"] + rect["height"]) - 2)):
        row = rows[y]
        for x in range(max(0, int(rect["x"]) + 2), min(len(row) // 3, int(rect["x"] + rect["width"]) - 2)):
            pixel = tuple(row[x * 3:x * 3 + 3])
            counts[pixel] = counts.get(pixel, 0) + 1
    return counts


def assert_terminal_seen(path: Path, rect: dict) -> None:
    """The terminal as a person sees it: a black screen with light text on it."""
    counts = colours_in(path, rect)
    total = sum(counts.values())
    black = counts.get((0, 0, 0), 0)
    light = sum(n for (r, g, b), n in counts.items() if min(r, g, b) > 150)
    assert black > total * 0.6, f"the terminal is not dark: {black}/{total} black pixels"
    assert light > 200, "no text on the terminal"


def assert_cell_colour(path: Path, rect: dict, colour: tuple[int, int, int]) -> None:
    counts = colours_in(path, rect)
    assert counts.get(colour, 0) > sum(counts.values()) * 0.5, f"the cell is not {colour}: {sorted(counts)[:5]}"
