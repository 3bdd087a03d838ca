"""The local classroom end to end, on the real Docker engine, over real SSH (issue 2).

One classroom is shared by the whole module (conftest's session fixture `classroom`). Each test
gets it as its file makes it, 3 students, all up (`classroom` below makes it again when a test
before grew it or took it down), so any test passes alone or in any order; in file order they break
one host by hand, grow it from 3 to 5 students and end with `down`, with nothing made twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import time

import paramiko
import pytest

from conftest import (
    classroom_resources,
    load_image_into,
    save_image,
    ssh_connect,
    ssh_run,
)

pytestmark = pytest.mark.engine

STATUS_KEYS = {"classroom", "backend", "hosts"}
HOST_KEYS = {"name", "role", "student", "address", "port", "state", "checks"}  # docs/design.md
HOST_EXTRA_KEYS = {"detail"}  # beyond the first contract: why a host is not ready (null when it is)
ROSTER_KEYS = {"student", "host", "port", "user", "password"}


STUDENTS = 3  # as conftest's classroom file says
ANY_SIZE = {"test_down_removes_everything_and_says_so"}  # takes the classroom as the tests before left it


@pytest.fixture
def classroom(classroom, engine, request):
    """The shared classroom, up; with its 3 students unless the test is in ANY_SIZE."""
    if not classroom.state_dir.exists():  # a test took it down
        made = classroom.cli("up")
        assert made.exit_code == 0, made
    elif request.function.__name__ not in ANY_SIZE and len(classroom.container_ids(engine)) != STUDENTS:
        for args in (("down", "--yes"), ("up",)):  # grown: it never shrinks, so make it again
            made = classroom.cli(*args)
            assert made.exit_code == 0, made
    return classroom


def host_container(engine, classroom, host: str):
    (container,) = engine.containers.list(
        all=True, filters={"label": [f"classroom.name={classroom.name}", f"classroom.host={host}"]})
    return container


def row_of(output: str, host: str) -> str:
    return next(line for line in output.splitlines() if f" {host} " in line)


# --- up: every student is in, as themselves, with a working Docker --------------------------------
def test_up_made_one_labelled_host_per_student(engine, classroom):
    containers = engine.containers.list(all=True, filters={"label": f"classroom.name={classroom.name}"})
    assert sorted(c.labels["classroom.host"] for c in containers) == ["student-01", "student-02", "student-03"]
    for container in containers:
        assert container.status == "running"
        assert container.labels["classroom.role"] == "student"
        assert container.labels["classroom.student"] == container.labels["classroom.host"]
        assert not container.attrs["HostConfig"]["Privileged"]
        ports = container.attrs["HostConfig"]["PortBindings"]
        # sshd and the course's ports (the default list: 80, 5000, 8000-8010), no Docker API on TCP
        course = ["80/tcp", "5000/tcp"] + [f"{port}/tcp" for port in range(8000, 8011)]
        assert sorted(ports) == sorted(["22/tcp", *course])
        assert {binding[0]["HostIp"] for binding in ports.values()} == {"127.0.0.1"}
    resources = classroom_resources(engine, classroom.name)
    assert len(resources["volumes"]) == 3 and len(resources["networks"]) == 1


def test_roster_json_has_every_student(classroom):
    rows = classroom.roster()
    assert [r["student"] for r in rows] == ["student-01", "student-02", "student-03"]
    for index, row in enumerate(rows, start=1):
        assert set(row) >= ROSTER_KEYS
        assert row["user"] == row["student"] == row["host"]
        assert row["port"] == classroom.port_base + index
        assert len(row["password"]) >= 12
    assert len({r["password"] for r in rows}) == 3


def test_every_student_logs_in_and_runs_docker(engine, classroom, tiny_image):
    image_tar = save_image(engine, tiny_image)
    for row in classroom.roster():
        load_image_into(host_container(engine, classroom, row["host"]), image_tar)
        client = ssh_connect(row["port"], row["user"], row["password"])
        try:
            code, out, err = ssh_run(client, "id -un")
            assert (code, out.strip()) == (0, row["student"]), err
            code, out, err = ssh_run(client, "id -nG")
            assert "docker" in out.split()
            code, out, err = ssh_run(client, f"docker run --rm {tiny_image} echo hello from $(hostname)")
            assert code == 0, err
            assert out.strip() == f"hello from {row['host']}"  # the outer $(hostname) is the host's
        finally:
            client.close()


def test_a_password_opens_only_its_own_host(classroom):
    one, two = classroom.roster()[:2]
    for user in (one["user"], two["user"]):  # neither as student-01 nor as student-02
        with pytest.raises(paramiko.AuthenticationException):
            ssh_connect(two["port"], user, one["password"]).close()
    ssh_connect(two["port"], two["user"], two["password"]).close()


def test_status_json_has_the_contract_shape(classroom):
    run = classroom.cli("status", "--json")
    assert run.exit_code == 0, run
    status = json.loads(run.stdout)
    assert set(status) == STATUS_KEYS
    assert status["classroom"] == classroom.name and status["backend"] == "local"
    assert [h["name"] for h in status["hosts"]] == ["student-01", "student-02", "student-03"]
    for index, host in enumerate(status["hosts"], start=1):
        assert HOST_KEYS <= set(host) <= HOST_KEYS | HOST_EXTRA_KEYS, sorted(host)
        assert host.get("detail") is None
        assert host["role"] == "student" and host["student"] == host["name"]
        assert host["address"] == "127.0.0.1" and host["port"] == classroom.port_base + index
        assert host["state"] == "ready"
        assert host["checks"]["ssh"] is True and host["checks"]["docker"] is True
        assert all(isinstance(v, bool) for v in host["checks"].values())


def test_status_table_and_roster_formats(classroom):
    run = classroom.cli("status")
    assert run.exit_code == 0, run
    assert "3/3 host(s) ready." in run.stdout
    assert "ready" in row_of(run.stdout, "student-02")
    passwords = {r["student"]: r["password"] for r in classroom.roster()}
    table = classroom.cli("roster")
    assert table.exit_code == 0, table
    for student, password in passwords.items():
        assert password in row_of(table.stdout, student)
    rows = list(csv.DictReader(io.StringIO(classroom.cli("roster", "--format", "csv").stdout)))
    assert {r["student"]: r["password"] for r in rows} == passwords
    assert rows[0]["ssh"] == f"ssh -p {classroom.port_base + 1} student-01@127.0.0.1"


def test_sheets_command_renders_every_student(classroom, tmp_path):
    out = tmp_path / "sheets"
    run = classroom.cli("sheets", "--format", "md", "--lang", "fr", "--out", str(out))
    assert run.exit_code == 0, run
    assert f"file(s) written to {out}" in run.stdout
    roster = classroom.roster()
    for row in roster:
        text = (out / f"{row['student']}.md").read_text()
        assert row["password"] in text and row["ssh"] in text
        assert all(other["password"] not in text for other in roster if other is not row)
        assert stat.S_IMODE((out / f"{row['student']}.md").stat().st_mode) == 0o600
    assert not list(out.glob("*.html"))


def test_extend_on_local_moves_the_record_and_the_sheets_and_says_nothing_enforces_it(classroom):
    """Issue 9, item 2 on local: no host enforces an expiry, so only the state and sheets move."""
    from datetime import datetime, timedelta

    meta_path = classroom.state_dir / "classroom.json"
    before = datetime.fromisoformat(json.loads(meta_path.read_text())["expires_at"])
    run = classroom.cli("extend", "90m")
    assert run.exit_code == 0, run
    after = datetime.fromisoformat(json.loads(meta_path.read_text())["expires_at"])
    assert after == before + timedelta(minutes=90)  # max(now, expiry) + 90m: the expiry is ahead
    assert "local hosts enforce no expiry: remove them with `classroom down`" in " ".join(run.stdout.split())
    sheets = "".join(p.read_text() for p in (classroom.state_dir / "sheets").glob("*.md"))
    assert f"{after:%H:%M}" in sheets
    bad = classroom.cli("extend", "0h")
    assert bad.exit_code == 2, bad
    assert bad.stderr == "classroom: error: DURATION: '0h' is not a duration like 90m, 8h or 2d\n"
    assert datetime.fromisoformat(json.loads(meta_path.read_text())["expires_at"]) == after


# --- secrets ---------------------------------------------------------------------------------------
def test_no_password_in_docker_inspect(engine, classroom):
    passwords = [r["password"] for r in classroom.roster()]
    inspected = [c.attrs for c in engine.containers.list(
        all=True, filters={"label": f"classroom.name={classroom.name}"})]
    inspected += [v.attrs for v in engine.volumes.list(filters={"label": f"classroom.name={classroom.name}"})]
    inspected += [n.attrs for n in engine.networks.list(filters={"label": f"classroom.name={classroom.name}"})]
    text = json.dumps(inspected)
    assert "student-01" in text  # the labels are there: the search really looks at them
    for password in passwords:
        assert password not in text


def test_secret_files_are_private(classroom):
    state = classroom.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    private = [state / "admin_key", state / "passwords.json", *sorted((state / "sheets").iterdir())]
    assert any(p.name == "index.html" for p in private) and any(p.suffix == ".md" for p in private)
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (state / "admin_key").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (state / "admin_key.pub").read_text().startswith("ssh-ed25519 ")


# --- one command at a time -------------------------------------------------------------------------
def test_a_second_command_on_a_locked_classroom_refuses_clearly(engine, classroom):
    from provision.state import ClassroomState

    before = classroom.container_ids(engine)
    with ClassroomState(classroom.name, root=classroom.home).lock("test"):
        started = time.monotonic()
        run = classroom.cli("up", env={"CLASSROOM_LOCK_WAIT": "0.5"})
        waited = time.monotonic() - started
        down = classroom.cli("down", "--yes", env={"CLASSROOM_LOCK_WAIT": "0.5"})
    assert run.exit_code == 1, run
    assert run.error_lines == [f"classroom: error: classroom {classroom.name!r} is busy: "
                               f"`classroom test` (pid {os.getpid()}) is running; "
                               "try again when it ends"]
    assert 0.5 <= waited < 10
    assert down.exit_code == 1 and "is busy" in down.stderr, down
    assert classroom.container_ids(engine) == before


# --- up converges ----------------------------------------------------------------------------------
def test_second_up_changes_nothing(engine, classroom):
    one = classroom.roster()[0]
    client = ssh_connect(one["port"], one["user"], one["password"])
    try:
        assert ssh_run(client, "echo keep-me > ~/marker.txt")[0] == 0
    finally:
        client.close()
    before = classroom.container_ids(engine)
    passwords = {r["student"]: r["password"] for r in classroom.roster()}

    run = classroom.cli("up")
    assert run.exit_code == 0, run
    for host in ("student-01", "student-02", "student-03"):
        assert "unchanged" in row_of(run.stdout, host), run
    assert classroom.container_ids(engine) == before
    assert {r["student"]: r["password"] for r in classroom.roster()} == passwords
    client = ssh_connect(one["port"], one["user"], one["password"])
    try:
        assert ssh_run(client, "cat ~/marker.txt")[1].strip() == "keep-me"
    finally:
        client.close()


def test_a_host_removed_by_hand_comes_back(engine, classroom):
    before = classroom.container_ids(engine)
    host_container(engine, classroom, "student-02").remove(force=True)

    missing = classroom.cli("status", "--json")
    assert missing.exit_code == 3, missing
    states = {h["name"]: h["state"] for h in json.loads(missing.stdout)["hosts"]}
    assert states.pop("student-02") == "missing"
    assert set(states.values()) == {"ready"}

    run = classroom.cli("up")
    assert run.exit_code == 0, run
    after = classroom.container_ids(engine)
    assert after["student-02"] != before["student-02"]
    assert {h: i for h, i in after.items() if h != "student-02"} == \
           {h: i for h, i in before.items() if h != "student-02"}
    two = next(r for r in classroom.roster() if r["student"] == "student-02")
    client = ssh_connect(two["port"], two["user"], two["password"])
    try:
        code, out, _ = ssh_run(client, "id -un")
        assert (code, out.strip()) == (0, "student-02")
    finally:
        client.close()


def test_growing_to_five_students_keeps_the_first_three(engine, classroom):
    before = classroom.container_ids(engine)
    passwords = {r["student"]: r["password"] for r in classroom.roster()}

    run = classroom.cli("up", "--students", "5")
    assert run.exit_code == 0, run
    after = classroom.container_ids(engine)
    assert sorted(after) == [f"student-0{i}" for i in range(1, 6)]
    assert {h: after[h] for h in before} == before
    for host in ("student-04", "student-05"):
        assert "created" in row_of(run.stdout, host)
    roster = classroom.roster()
    assert {r["student"]: r["password"] for r in roster[:3]} == passwords
    for row in roster[3:]:
        assert row["port"] == classroom.port_base + int(row["student"][-2:])
        client = ssh_connect(row["port"], row["user"], row["password"])
        try:
            assert ssh_run(client, "id -un; docker info --format '{{.ServerVersion}}'")[0] == 0
        finally:
            client.close()


# --- down ------------------------------------------------------------------------------------------
def test_down_removes_everything_and_says_so(engine, classroom):
    hosts = len(classroom.container_ids(engine))  # 3, or 5 after the test that grows it
    run = classroom.cli("down", "--yes")
    assert run.exit_code == 0, run
    assert (f"Removed {hosts} container(s), 1 network(s), {hosts} volume(s) of classroom {classroom.name!r}."
            in run.stdout)
    assert f"Verified: nothing of classroom {classroom.name!r} remains." in run.stdout
    assert classroom_resources(engine, classroom.name) == {"containers": [], "volumes": [], "networks": []}
    assert not classroom.state_dir.exists()

    again = classroom.cli("down", "--yes")
    assert again.exit_code == 0, again
    assert f"classroom {classroom.name!r}: already gone, nothing to remove." in again.stdout
    assert not classroom.state_dir.exists()

    gone = classroom.cli("status")
    assert gone.exit_code == 2 and gone.error_lines == [
        f"classroom: error: no classroom named {classroom.name!r} here: create it with `classroom up`"]
