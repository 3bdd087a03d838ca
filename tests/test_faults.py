"""Faults that must lose nothing (issue 8, section 2): damaged or lost state, a course that
changed or went away, a refused `up`, Ctrl-C, and the small mistakes of a classroom file."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
from conftest import (
    PREFIX,
    REPO,
    Cli,
    assert_nothing_created,
    assert_one_line,
    classroom_resources,
    free_port_base,
    remove_classroom_resources,
    ssh_connect,
    ssh_run,
    unique_name,
    write_classroom_file,
)

NOTHING = {"containers": [], "volumes": [], "networks": []}


class CachedCli(Cli):
    """A runner whose `~/.cache` is its own too (XDG_CACHE_HOME), so cache modes and removals can be checked."""

    def __init__(self, home: Path, cwd: Path, cache: Path):
        super().__init__(home, cwd)
        self.cache = cache

    def environment(self, env=None):
        return super().environment({"XDG_CACHE_HOME": str(self.cache), **(env or {})})


def make_room(folder: Path, prefix: str, students: int = 2) -> tuple[str, CachedCli]:
    name = unique_name(prefix)
    (folder / "exercises").mkdir(parents=True, exist_ok=True)
    (folder / "exercises" / "README.md").write_text("Lab 1: run hello-world\n")
    write_classroom_file(folder, name, students=students, port_base=free_port_base(students + 2),
                         extra="exercises: ./exercises\n")
    return name, CachedCli(folder / "home", folder, folder / "cache")


def only_error(run) -> str:
    """The one `classroom: error:` line of a refused command (exit 2)."""
    assert run.exit_code == 2, run
    assert len(run.error_lines) == 1, run
    assert run.error_lines[0].startswith(PREFIX), run
    return run.error_lines[0][len(PREFIX):]


def container_ids(engine, name: str) -> dict[str, str]:
    containers = engine.containers.list(all=True, filters={"label": f"classroom.name={name}"})
    return {c.labels["classroom.host"]: c.id for c in containers}


def roster(cli) -> dict[str, dict]:
    run = cli("roster", "--format", "json")
    assert run.exit_code == 0, run
    return {row["student"]: row for row in json.loads(run.stdout)}


def can_log_in(row: dict, password: str) -> bool:
    try:
        client = ssh_connect(row["port"], row["user"], password)
    except paramiko.AuthenticationException:
        return False
    try:
        return ssh_run(client, "id -un")[1].strip() == row["user"]
    finally:
        client.close()


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory):
    """One 2-student classroom with exercises, shared by the tests that leave it as they found it."""
    folder = tmp_path_factory.mktemp("faults")
    name, cli = make_room(folder, "t-faults")
    try:
        run = cli("up")
        assert run.exit_code == 0, run
        yield name, cli
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


# --- 1. a damaged or missing state file never blocks `down` ---------------------------------------
def test_damaged_state_files_are_named_and_down_still_removes_everything(engine, tmp_path):
    name, cli = make_room(tmp_path, "t-damaged", students=1)
    try:
        assert cli("up").exit_code == 0
        state = cli.home / name
        meta = (state / "classroom.json").read_text()
        (state / "passwords.json").write_text('{"student-01": "abc')  # truncated
        for args in (["status"], ["roster"], ["reset", "1"], ["up"]):
            assert only_error(cli(*args)) == (
                f"{state}/passwords.json is damaged (not valid JSON): restore the file, or `classroom up "
                "--new-secrets` gives every student a new password (the printed sheets become void); "
                "`classroom down` still removes the classroom"), args
        (state / "classroom.json").write_text(meta[: len(meta) // 2])
        for args in (["status"], ["reset", "1"], ["sheets"], ["up"]):
            assert only_error(cli(*args)) == (
                f"{state}/classroom.json is damaged (not valid JSON): `classroom down` still removes the "
                "classroom; or restore the file"), args
        assert container_ids(engine, name), "a refused command removed hosts"
        # `down` needs neither the files nor the course: run it elsewhere, by name only.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        run = cli("--name", name, "down", "--yes", cwd=elsewhere)
        assert run.exit_code == 0, run
        assert f"Verified: nothing of classroom '{name}' remains." in run.stdout
        assert classroom_resources(engine, name) == NOTHING
        assert not state.exists()
    finally:
        cli("--name", name, "down", "--yes")
        remove_classroom_resources(engine, name)


# --- 2. secrets are never silently regenerated while hosts exist ---------------------------------
def test_lost_passwords_are_refused_then_new_secrets_sets_new_ones_everywhere(engine, room):
    name, cli = room
    state = cli.home / name
    before = roster(cli)
    ids = container_ids(engine, name)
    (state / "passwords.json").unlink()
    message = only_error(cli("up"))
    assert message == (f"classroom '{name}' has hosts whose secrets are gone from {state} (the passwords of "
                       "student-01, student-02): restore them, or run `classroom up --new-secrets` to make new ones "
                       "(new passwords void the printed sheets), or `classroom down` then `classroom up`")
    assert not (state / "passwords.json").exists(), "a refused `up` made passwords"
    assert only_error(cli("reset", "1")).startswith(f"{state}/passwords.json is missing: ")
    assert container_ids(engine, name) == ids

    run = cli("up", "--new-secrets")
    assert run.exit_code == 0, run
    assert "the sheets printed before are void" in run.stderr
    after = roster(cli)
    for student, row in after.items():
        assert row["password"] != before[student]["password"]
        assert can_log_in(row, row["password"]), student
        assert not can_log_in(row, before[student]["password"]), f"{student}'s old password still works"
        sheet = (state / "sheets" / f"{student}.md").read_text()
        assert row["password"] in sheet and before[student]["password"] not in sheet
    assert container_ids(engine, name) == ids, "hosts were replaced: students' work would be lost"


def test_lost_swarm_passwords_are_refused_then_new_secrets_sets_new_ones_on_the_nodes(engine, tmp_path):
    # The shared Swarm nodes have passwords of their own (swarm_passwords.json): lost, they are
    # refused and renewed exactly as the students' own ones are.
    name = unique_name("t-swlost")
    write_classroom_file(tmp_path, name, students=1, swarm_nodes=1, port_base=free_port_base(4))
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    state = cli.home / name
    try:
        assert cli("up").exit_code == 0
        assert stat.S_IMODE((state / "swarm_passwords.json").stat().st_mode) == 0o600
        before = roster(cli)["student-01"]
        node = {**before, "port": next(h["port"] for h in json.loads(cli("status", "--json").stdout)["hosts"]
                                       if h["name"] == "swarm-1")}
        saved = (state / "swarm_passwords.json").read_text()
        (state / "swarm_passwords.json").write_text(saved[: len(saved) // 2])
        assert only_error(cli("roster")).startswith(f"{state}/swarm_passwords.json is damaged (not valid JSON): ")
        (state / "swarm_passwords.json").unlink()
        ids = container_ids(engine, name)
        assert only_error(cli("up")) == (
            f"classroom '{name}' has hosts whose secrets are gone from {state} (the students' Swarm passwords): "
            "restore them, or run `classroom up --new-secrets` to make new ones (new passwords void the printed "
            "sheets), or `classroom down` then `classroom up`")
        assert not (state / "swarm_passwords.json").exists(), "a refused `up` made passwords"
        assert only_error(cli("reset", "swarm-1", "--hard")).startswith("the students' Swarm passwords are gone")

        run = cli("up", "--new-secrets")
        assert run.exit_code == 0, run
        assert "new Swarm passwords for every student: the sheets printed before are void" in run.stderr
        after = roster(cli)["student-01"]
        assert after["password"] == before["password"]  # the student's own host is not concerned
        assert after["swarm_password"] not in (before["swarm_password"], after["password"])
        assert can_log_in(node, after["swarm_password"])
        assert not can_log_in(node, before["swarm_password"]), "the old Swarm password still works"
        assert container_ids(engine, name) == ids, "hosts were replaced"
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


def test_a_lost_admin_key_is_refused_then_new_secrets_installs_one_through_the_engine(engine, room):
    name, cli = room
    state = cli.home / name
    old = (state / "admin_key.pub").read_text()
    (state / "admin_key").unlink()
    (state / "admin_key.pub").unlink()
    assert only_error(cli("up")).startswith(f"classroom '{name}' has hosts whose secrets are gone from {state} "
                                           "(the admin key file admin_key): restore them, "
                                           "or run `classroom up --new-secrets`")
    assert only_error(cli("exec", "--", "true")).startswith(f"{state}/admin_key is missing: the tool cannot log "
                                                            "into the classroom's hosts without it")
    assert not (state / "admin_key").exists(), "a refused command made a key"

    run = cli("up", "--new-secrets")
    assert run.exit_code == 0, run
    assert "a new admin key, installed on 2 host(s)" in run.stderr
    assert (state / "admin_key.pub").read_text() != old
    run = cli("exec", "--", "id", "-un")
    assert run.exit_code == 0, run
    assert run.stdout.count("root") == 2


def test_a_lost_host_key_is_refused_then_new_secrets_installs_one_through_the_engine(engine, room):
    name, cli = room
    state = cli.home / name
    keys = state / "host_keys"
    old = (keys / "student-02.pub").read_text()
    (keys / "student-02").unlink()
    (keys / "student-02.pub").unlink()
    assert only_error(cli("up")).startswith(f"classroom '{name}' has hosts whose secrets are gone from {state} "
                                           "(the host keys of student-02)")
    assert not (keys / "student-02").exists()

    run = cli("up", "--new-secrets")
    assert run.exit_code == 0, run
    assert "new host keys for student-02" in run.stderr
    new = (keys / "student-02.pub").read_text()
    assert new != old and new.split()[1] in (state / "known_hosts").read_text()
    # The host now answers with the new key: the tool (which pins it) reaches it as admin and as student.
    hosts = json.loads(cli("status", "--json").stdout)["hosts"]
    assert [(h["name"], h["state"]) for h in hosts] == [("student-01", "ready"), ("student-02", "ready")]
    assert cli("exec", "--hosts", "student-02", "--", "true").exit_code == 0


# --- 3. the course a classroom was made from is recorded -------------------------------------------
def test_commands_that_need_the_course_refuse_a_missing_or_changed_one(engine, room):
    name, cli = room
    folder = cli.cwd
    course = folder / "classroom.yaml"
    text = course.read_text()
    away = folder / "away.yaml"
    course.rename(away)
    try:
        for args in (["reset", "1"], ["status"], ["sheets"]):
            assert only_error(cli("--name", name, *args)) == (
                f"classroom '{name}' was made from {course}, which is missing: restore it "
                "(`classroom -f FILE up` applies another course)"), args
    finally:
        away.rename(course)
    run = cli("exec", "--hosts", "student-01", "--", "cat", "/home/student-01/exercises/README.md")
    assert run.exit_code == 0 and "Lab 1" in run.stdout, "a refused reset touched the exercises"

    course.write_text(text + "sheets:\n  lang: fr\n")
    try:
        for args in (["reset", "1"], ["status"], ["sheets"]):
            assert only_error(cli(*args)) == (
                f"{course} changed since classroom '{name}' was made from it: `classroom up` applies a changed "
                "file"), args
        elsewhere = folder / "sub"
        elsewhere.mkdir(exist_ok=True)
        assert only_error(cli("--name", name, "status", cwd=elsewhere)).startswith(
            f"classroom '{name}' was made from {course}")
    finally:
        course.write_text(text)
    assert cli("status").exit_code == 0


def test_roster_and_down_never_need_the_course(engine, room):
    name, cli = room
    elsewhere = cli.cwd / "no-course-here"
    elsewhere.mkdir(exist_ok=True)
    run = cli("--name", name, "roster", "--format", "json", cwd=elsewhere)
    assert run.exit_code == 0, run
    assert [row["student"] for row in json.loads(run.stdout)] == ["student-01", "student-02"]
    # (`down` by name only, from a folder with no classroom file: the damaged-state test above)


# --- 4. a failed `up` changes nothing --------------------------------------------------------------
MISSING_IMAGE = "classroom-test/never-built:1"


def test_a_refused_up_of_a_new_classroom_leaves_nothing(engine, tmp_path):
    name = unique_name("t-noimage")
    write_classroom_file(tmp_path, name, students=1, extra=f"images:\n  - {MISSING_IMAGE}\n")
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    try:
        run = cli("up")
        message = only_error(run)
        assert message.startswith(f"images.0: {MISSING_IMAGE} is not on this engine and cannot be pulled")
        assert_nothing_created(cli, name, engine)
    finally:
        remove_classroom_resources(engine, name)


def test_a_refused_up_of_an_existing_classroom_records_nothing(engine, room):
    name, cli = room
    state = cli.home / name
    meta = (state / "classroom.json").read_text()
    passwords = (state / "passwords.json").read_text()
    ids = container_ids(engine, name)
    bigger = cli.cwd / "bigger.yaml"
    bigger.write_text((cli.cwd / "classroom.yaml").read_text() + f"images:\n  - {MISSING_IMAGE}\n")
    message = only_error(cli("-f", bigger, "up", "--students", "3"))
    assert message.startswith(f"images.0: {MISSING_IMAGE} is not on this engine")
    assert (state / "classroom.json").read_text() == meta
    assert (state / "passwords.json").read_text() == passwords
    assert container_ids(engine, name) == ids
    run = cli("status", "--json")
    assert run.exit_code == 0, run
    assert [h["name"] for h in json.loads(run.stdout)["hosts"]] == ["student-01", "student-02"]


# --- 5. Ctrl-C ---------------------------------------------------------------------------------------
INTERRUPTED = re.compile(r"classroom: interrupted (during|after) '[^']+': run `classroom up` again, it converges")


def test_ctrl_c_during_up_exits_130_with_one_line_and_the_next_up_converges(engine, tmp_path):
    name, cli = make_room(tmp_path, "t-sigint", students=2)
    env = {**os.environ, **{k: v for k, v in cli.environment().items() if v is not None}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    try:
        process = subprocess.Popen([sys.executable, "-m", "provision.cli", "up"], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        lines: list[str] = []
        started = threading.Event()

        def read_stderr() -> None:
            for line in process.stderr:
                lines.append(line.rstrip("\n"))
                if line.startswith("Starting 2 host(s): done"):  # the hosts exist, provisioning begins
                    started.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        assert started.wait(300), f"`up` never started its hosts: {lines}"
        time.sleep(0.5)  # into provisioning, which waits for every host's sshd
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole group
        try:
            code = process.wait(timeout=30)  # not the minutes the hosts in progress could take
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"`classroom up` still runs 30 s after Ctrl-C: {lines}")
        reader.join(10)
        process.stdout.close()
        assert code == 130, lines
        assert not any("Traceback" in line for line in lines), lines
        told = [line for line in lines if line.startswith("classroom:")]
        assert len(told) == 1 and told[0] == lines[-1], lines
        assert INTERRUPTED.fullmatch(told[0]), told[0]

        run = cli("up")
        assert run.exit_code == 0, run
        hosts = json.loads(cli("status", "--json").stdout)["hosts"]
        assert [(h["name"], h["state"]) for h in hosts] == [("student-01", "ready"), ("student-02", "ready")]
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


def test_a_host_left_half_made_by_an_interrupted_up_is_made_again(engine, tiny_image, tmp_path):
    name, cli = make_room(tmp_path, "t-halfmade", students=2)
    # What Ctrl-C between `docker create` and `docker start` leaves: a container never started, without keys.
    labels = {"classroom.name": name, "classroom.host": "student-02", "classroom.role": "student",
              "classroom.student": "student-02", "classroom.managed-by": "classroom"}
    half = engine.containers.create(tiny_image, ["sleep", "1"], name=f"classroom-{name}-student-02", labels=labels)
    try:
        run = cli("up")
        assert run.exit_code == 0, run
        assert container_ids(engine, name)["student-02"] != half.id
        hosts = json.loads(cli("status", "--json").stdout)["hosts"]
        assert [(h["name"], h["state"]) for h in hosts] == [("student-01", "ready"), ("student-02", "ready")]
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


# --- 6. smaller items ---------------------------------------------------------------------------------
def test_sheets_to_a_folder_that_cannot_be_written_is_bad_input(room):
    _name, cli = room
    run = cli("sheets", "--out", "/proc/nope")
    assert only_error(run).startswith("--out: cannot write the sheets to /proc/nope: ")


def test_the_cache_is_private_and_down_clears_only_this_classrooms_part(engine, tmp_path):
    name, cli = make_room(tmp_path, "t-cache", students=1)
    root = cli.cache / "classroom"
    root.mkdir(parents=True)
    root.chmod(0o755)  # as an older version left it
    # Another classroom here uses a cached file too: it must stay.
    theirs = root / "images" / "0123456789abcdef0123-other_1.tar"
    theirs.parent.mkdir()
    theirs.write_bytes(b"image")
    other = cli.home / "t-other-classroom"
    other.mkdir(parents=True)
    (other / "classroom.json").write_text(json.dumps({"cache": [str(theirs)]}))
    try:
        assert cli("up").exit_code == 0
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        mine = json.loads((cli.home / name / "classroom.json").read_text())["cache"]
        assert mine and all(Path(p).is_file() and Path(p).is_relative_to(root) for p in mine)
        run = cli("down", "--yes", "--clear-cache")
        assert run.exit_code == 0, run
        assert f"Cleared {len(mine)} cached file(s) of classroom '{name}'." in run.stdout
        assert not any(Path(p).exists() for p in mine)
        assert theirs.read_bytes() == b"image"
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


EMPTY = "{file}: is empty: write the classroom's settings in it (name, students, images, ...)"
def test_down_at_a_terminal_asks_about_the_cache_and_keeps_it_when_told_no(engine, tmp_path):
    import pty

    name, cli = make_room(tmp_path, "t-askcache", students=1)
    try:
        assert cli("up").exit_code == 0
        mine = json.loads((cli.home / name / "classroom.json").read_text())["cache"]
        env = {**os.environ, **{k: v for k, v in cli.environment().items() if v is not None}}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        controller, terminal = pty.openpty()  # stdin is a terminal: `down` may ask
        try:
            os.write(controller, b"y\nn\n")  # destroy: yes; clear the cache: no
            done = subprocess.run([sys.executable, "-m", "provision.cli", "down"], cwd=tmp_path, env=env,
                                  stdin=terminal, capture_output=True, text=True, timeout=300)
        finally:
            os.close(terminal)
            os.close(controller)
        assert done.returncode == 0, done.stderr
        # It lists what it found, then asks.
        assert re.search(rf"Destroy these \d+ resource\(s\) of classroom '{name}' and everything on it\?",
                         done.stderr), done.stderr
        assert f"container classroom-{name}-student-01" in done.stdout, done.stdout
        assert re.search(r"Also clear its \d+ cached file\(s\) \(\d+ MB\)\? \[y/N\]", done.stderr), done.stderr
        assert classroom_resources(engine, name) == NOTHING
        assert all(Path(p).is_file() for p in mine), "the cache was cleared though the trainer said no"
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


FAKE_SECRET = "root:$6$Zq9pX2sECRETsalt$Cq1FAKEHASHnotreal0123456789:19700:0:99999:7:::"


@pytest.mark.parametrize("content, message", [
    ("name: {name}\nstudents: 2\nstudents: 3\n", "{file}: invalid YAML (line 3): duplicate setting 'students'"),
    ("name: {name}\nswarm:\n  nodes: 1\n  nodes: 2\n", "{file}: invalid YAML (line 4): duplicate setting 'nodes'"),
    ("", EMPTY),
    ("# name: course\n# students: 3\n", EMPTY),
    ("name: {name}\nstudents: true\n", "{file}: students: must be a whole number (got True)"),
    ("name: {name}\nstudents: 2.5\n", "{file}: students: must be a whole number (got 2.5)"),
    ("name: {name}\nstudents: '3'\n", "{file}: students: must be a whole number (got '3')"),
    ("name: {name}\nswarm:\n  nodes: yes\n", "{file}: swarm.nodes: must be a whole number (got True)"),
    (FAKE_SECRET + "\ndaemon:*:19700:0:99999:7:::\n", "{file}: is not a classroom file (its keys are not setting names)"),
    (FAKE_SECRET + "\n", "{file}: is not a classroom file (its keys are not setting names)"),
    ("API_TOKEN=SECRET-0123456789abcdef\n", "{file}: must be a mapping of settings (name, students, images, ...)"),
], ids=["duplicate-key", "duplicate-nested-key", "empty", "only-comments", "students-true", "students-fraction",
        "students-string", "swarm-nodes-yes", "shadow-like", "one-secret-line", "env-like"])
def test_classroom_file_mistakes_are_one_line_and_never_echo_a_secret(content, message, cli, tmp_path):
    name = unique_name("t-file")
    path = tmp_path / "course.yaml"
    path.write_text(content.replace("{name}", name))
    run = cli("-f", path, "up")
    assert_one_line(run, message.replace("{file}", str(path)), regex=False)
    assert "SECRET" not in run.stderr + run.stdout
    assert_nothing_created(cli, name, None)
