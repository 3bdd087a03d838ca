"""The pure parts of `classroom web` and `classroom progress` (no engine): who may ask, how often,
seats, the listen address, and the checks folder's place in the course."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line, unique_name, write_classroom_file

pytest.importorskip("tornado")

from provision.course_checks import course_checks  # noqa: E402
from provision.errors import BadInput  # noqa: E402
from provision.web.access import CODE_ALPHABET, LoginLimiter, Sessions, admin_token, class_code, same_secret  # noqa: E402
from provision.web.errors import WebError  # noqa: E402
from provision.web.seats import SeatBook  # noqa: E402
from provision.web.server import parse_listen  # noqa: E402


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_sign_ins_are_limited_per_address_and_forgotten_after_the_window():
    clock = Clock()
    limiter = LoginLimiter(failures=3, window=60, clock=clock)
    for _ in range(3):
        assert limiter.wait_seconds("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.wait_seconds("10.0.0.1") == 60
    assert limiter.wait_seconds("10.0.0.2") == 0  # another address is not held up
    clock.now += 45
    assert limiter.wait_seconds("10.0.0.1") == 15
    clock.now += 15.5
    assert limiter.wait_seconds("10.0.0.1") == 0


def test_sessions_expire_and_tokens_compare_whole():
    clock = Clock()
    sessions = Sessions(clock)
    session = sessions.new(student="student-01")
    assert sessions.get(session.token) is session and session.csrf != session.token
    assert sessions.get(session.token[:-1]) is None and sessions.get(None) is None
    clock.now += 13 * 3600
    assert sessions.get(session.token) is None
    assert same_secret("abc", "abc") and not same_secret("abc", "abd") and not same_secret("ab", "abc")


def test_admin_token_and_class_code_are_kept_private_and_stable(tmp_path):
    token, code = admin_token(tmp_path), class_code(tmp_path)
    assert admin_token(tmp_path) == token and class_code(tmp_path) == code
    assert len(token) >= 40 and len(code) == 8 and set(code) <= set(CODE_ALPHABET)
    for name in ("web_token", "web_class_code"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


def test_seats_are_claimed_once_each_until_the_class_is_full(tmp_path):
    seats = SeatBook(tmp_path)
    students = ["student-01", "student-02"]
    assert seats.claim("  Ada   Lovelace ", students) == "student-01"
    with pytest.raises(WebError, match="student-01 is already taken"):
        seats.claim("Bob", students, "student-01")
    with pytest.raises(WebError, match="type your name"):
        seats.claim("<script>", students)
    assert seats.claim("Grace", students) == "student-02"
    with pytest.raises(WebError, match="the class is full: all 2 seats are taken"):
        seats.claim("Late", students)
    assert json.loads((tmp_path / "seats.json").read_text()) == {"student-01": "Ada Lovelace", "student-02": "Grace"}


@pytest.mark.parametrize("text, expected", [("127.0.0.1:8000", ("127.0.0.1", 8000)), ("[::1]:9", ("::1", 9)),
                                            ("0.0.0.0:8443", ("0.0.0.0", 8443))])
def test_listen_addresses(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8000", "localhost:8000", "127.0.0.1:0", "127.0.0.1:http", ":8000"])
def test_bad_listen_addresses_are_refused(text):
    with pytest.raises(BadInput, match="--listen: .* is not ADDR:PORT"):
        parse_listen(text)


def test_course_checks_are_the_numbered_folders_with_a_check(tmp_path):
    for name in ("02-b", "01-a", "notes", "03-empty"):
        (tmp_path / name).mkdir()
    (tmp_path / "01-a" / "check.sh").write_text("true\n")
    (tmp_path / "02-b" / "check.sh").write_text("false\n")
    (tmp_path / "notes" / "check.sh").write_text("true\n")
    assert [(c.name, c.script) for c in course_checks(tmp_path)] == [("01-a", "true\n"), ("02-b", "false\n")]


def test_progress_without_a_checks_folder_is_bad_input(cli, tmp_path):
    write_classroom_file(tmp_path, unique_name("t-prog"), students=1)
    run = cli("progress")
    assert_one_line(run, "the classroom file has no `checks:` folder: add `checks: ./checks`, holding "
                         "NN-name/check.sh (exit 0 when the exercise is done)", regex=False)


def test_checks_inside_the_exercises_are_refused_before_anything_is_made(cli, tmp_path):
    (tmp_path / "exercises" / "checks" / "01-a").mkdir(parents=True)
    write_classroom_file(tmp_path, unique_name("t-prog"), students=1,
                         extra="exercises: ./exercises\nchecks: ./exercises/checks\n")
    run = cli("up")
    assert_one_line(run, r".*checks: .* and the exercises folder .* overlap: the exercises are copied to every "
                         r"student, the checks must not be", regex=True)
    assert not cli.home.exists() or not any(cli.home.iterdir())


def test_web_tls_needs_both_files(cli, tmp_path):
    write_classroom_file(tmp_path, unique_name("t-web"), students=1, extra="web:\n  tls_cert: cert.pem\n")
    run = cli("web")
    assert_one_line(run, r".*web: tls_cert and tls_key go together: give both, or neither", regex=True)


def test_the_example_course_ships_a_check_per_chapter_and_they_are_valid_shell():
    import shutil
    import subprocess

    from conftest import REPO

    course = REPO / "examples" / "docker-intro"
    chapters = sorted(p.name for p in (course / "exercises").iterdir() if p.is_dir())
    checks = course_checks(course / "checks")
    assert [c.name for c in checks] == chapters
    for check in checks:
        assert subprocess.run(["sh", "-n"], input=check.script, text=True).returncode == 0, check.name
        if shutil.which("shellcheck"):
            found = subprocess.run(["shellcheck", "-s", "sh", "-"], input=check.script, text=True, capture_output=True)
            assert found.returncode == 0, f"{check.name}: {found.stdout}"


def test_progress_of_a_host_that_does_not_run_is_unknown_and_says_why(tmp_path):
    from pathlib import Path

    from fakes import FakeBackend, FakeHostWork
    from provision import commands
    from provision.config import ClassroomConfig
    from provision.course_checks import progress
    from provision.state import ClassroomState

    (tmp_path / "checks" / "01-a").mkdir(parents=True)
    (tmp_path / "checks" / "01-a" / "check.sh").write_text("true\n")
    name = unique_name("prog")
    state = ClassroomState(name, tmp_path / "home")
    backend = FakeBackend(state)
    config = ClassroomConfig(name=name, students=2, swarm={"nodes": 0}, checks=Path("checks"), base_dir=tmp_path)
    room = commands.Classroom.open(config, backend=backend, remote=FakeHostWork(), state=state)
    commands.up(room)
    backend.stop("student-02")
    backend.remove("student-01")
    result = progress(room)
    why = "the host is not running: `classroom up` brings it back"
    assert result.as_json() == {"classroom": name, "exercises": ["01-a"], "students": [
        {"student": "student-01", "host": "student-01", "done": {"01-a": None}, "count": 0, "detail": why},
        {"student": "student-02", "host": "student-02", "done": {"01-a": None}, "count": 0, "detail": why}]}
    assert result.unknown == ["student-01", "student-02"]


def test_web_refuses_a_bad_listen_address_and_a_classroom_that_does_not_exist(cli, tmp_path):
    name = unique_name("t-web")
    write_classroom_file(tmp_path, name, students=1)
    assert_one_line(cli("web", "--listen", "everywhere"),
                    "--listen: 'everywhere' is not ADDR:PORT, like 127.0.0.1:8000 or 0.0.0.0:8443", regex=False)
    assert_one_line(cli("web"), f"no classroom named {name!r} here: create it with `classroom up`", regex=False)
    assert not cli.home.exists() or not any(cli.home.iterdir())
