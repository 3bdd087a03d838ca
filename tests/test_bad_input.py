"""Bad input (docs/design.md's contract): exit code 2, exactly one line on stderr that says what is
wrong, and nothing created: no state folder, nothing on the engine with the classroom's label.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import (
    Cli,
    assert_nothing_created,
    assert_one_line,
    docker_client,
    free_port_base,
    remove_classroom_resources,
    unique_name,
    write_classroom_file,
)

@dataclass
class Case:
    id: str
    args: list[str]  # `{name}` is replaced by the case's classroom name, `{tmp}` by its folder
    message: str  # the whole line after PREFIX; a regex when `regex`
    files: dict[str, str] = field(default_factory=dict)  # written into the folder first
    regex: bool = False
    engine: bool = False  # the answer needs a Docker engine to be reached
    env: dict[str, str] = field(default_factory=dict)
    subprocess: bool = False


VALID = "name: {name}\nstudents: 2\nswarm:\n  nodes: 0\nlocal:\n  ssh_port_base: {port}\n  public_host: 127.0.0.1\n"

CASES = [
    # command-line values
    Case("students-zero", ["--name", "{name}", "up", "--students", "0"], "--students: must be at least 1 (got 0)"),
    Case("students-negative", ["--name", "{name}", "up", "--students", "-3"],
         "--students: must be at least 1 (got -3)"),
    Case("students-not-a-number", ["--name", "{name}", "up", "--students", "abc"],
         r"Invalid value for '--students' / '-n': .*integer.*", regex=True),
    Case("students-too-many", ["--name", "{name}", "up", "--students", "201"],
         "--students: must be at most 200 (got 201)"),
    Case("swarm-nodes-negative", ["--name", "{name}", "up", "--swarm-nodes", "-1"],
         "--swarm-nodes: must be at least 0 (got -1)"),
    Case("swarm-nodes-too-many", ["--name", "{name}", "up", "--swarm-nodes", "10"],
         "--swarm-nodes: must be at most 9 (got 10)"),
    Case("unknown-backend", ["--name", "{name}", "up", "--backend", "gcp"],
         r"Invalid value for '--backend': (Value error, )?'gcp' is not one of 'local', 'aws'\.", regex=True),
    Case("bad-name-option", ["--name", "Bad Name", "status"],
         "--name: 'Bad Name' is not a valid classroom name (lowercase letters, digits and '-', at most 40)"),
    Case("unknown-format", ["--name", "{name}", "roster", "--format", "xml"],
         r"Invalid value for '--format': (Value error, )?'xml' is not one of 'table', 'csv', 'json'\.", regex=True),
    Case("unknown-sheet-lang", ["--name", "{name}", "sheets", "--lang", "de"],
         r"Invalid value for '--lang': (Value error, )?'de' is not one of 'en', 'fr'\.", regex=True),
    Case("unknown-command", ["frobnicate"], "No such command 'frobnicate'."),
    Case("unknown-option", ["--name", "{name}", "up", "--colour"], "No such option: --colour"),
    Case("option-without-value", ["--name", "{name}", "up", "--students"], "Option '--students' requires an argument."),
    # the classroom file
    Case("file-missing", ["-f", "missing.yaml", "up"], "missing.yaml: no such classroom file"),
    Case("file-is-a-folder", ["-f", "sub", "up"], "sub: is a folder, not a classroom file", files={"sub/x": ""}),
    Case("file-broken-yaml", ["-f", "bad.yaml", "up"],
         "bad.yaml: invalid YAML (line 3): expected ',' or ']', but got '<stream end>'",
         files={"bad.yaml": "name: {name}\nstudents: [1, 2\n"}),
    Case("file-is-a-list", ["-f", "bad.yaml", "up"],
         "bad.yaml: must be a mapping of settings (name, students, images, ...)", files={"bad.yaml": "- a\n- b\n"}),
    Case("file-unknown-field", ["-f", "bad.yaml", "up"], "bad.yaml: studnets: unknown setting",
         files={"bad.yaml": "name: {name}\nstudnets: 3\n"}),
    Case("file-unknown-nested-field", ["-f", "bad.yaml", "up"], "bad.yaml: local.ssh_port: unknown setting",
         files={"bad.yaml": "name: {name}\nlocal:\n  ssh_port: 30000\n"}),
    Case("file-swarm-mode", ["-f", "bad.yaml", "up"],
         "bad.yaml: swarm.mode: must be 'per-student' or 'shared' (got 'private')",
         files={"bad.yaml": "name: {name}\nswarm:\n  mode: private\n"}),
    Case("node-ports-past-65535", ["-f", "bad.yaml", "up"],
         "bad.yaml: local.ssh_port_base: 60000 leaves no room for the students' Swarm nodes (port 68030 would be "
         "needed): lower it", files={"bad.yaml": "name: {name}\nstudents: 30\nswarm:\n  nodes: 9\nlocal:\n"
                                                  "  ssh_port_base: 60000\n"}),
    Case("file-students-not-a-number", ["-f", "bad.yaml", "up"],
         "bad.yaml: students: must be a whole number (got 'many')", files={"bad.yaml": "name: {name}\nstudents: many\n"}),
    Case("file-bad-classroom-name", ["-f", "bad.yaml", "up"],
         "bad.yaml: name: 'T_Bad' is not a valid classroom name (lowercase letters, digits and '-', at most 40)",
         files={"bad.yaml": "name: T_Bad\n"}),
    Case("file-bad-image-name", ["-f", "bad.yaml", "up"],
         "bad.yaml: images.1.name: 'Alpine:3.4' is not a valid image name",
         files={"bad.yaml": "name: {name}\nimages:\n  - redis\n  - Alpine:3.4\n"}),
    Case("file-bad-ttl", ["-f", "bad.yaml", "up"], "bad.yaml: ttl: 'forever' is not a duration like 90m, 8h or 2d",
         files={"bad.yaml": "name: {name}\nttl: forever\n"}),
    Case("file-zero-ttl", ["-f", "bad.yaml", "up"], "bad.yaml: ttl: '0h' is not a duration like 90m, 8h or 2d",
         files={"bad.yaml": "name: {name}\nttl: 0h\n"}),
    Case("file-bad-lang", ["-f", "bad.yaml", "up"], "bad.yaml: sheets.lang: must be 'en' or 'fr' (got 'de')",
         files={"bad.yaml": "name: {name}\nsheets:\n  lang: de\n"}),
    Case("file-privileged-port", ["-f", "bad.yaml", "up"],
         "bad.yaml: local.ssh_port_base: must be at least 1024 (got 80)",
         files={"bad.yaml": "name: {name}\nlocal:\n  ssh_port_base: 80\n"}),
    Case("file-missing-exercises", ["-f", "bad.yaml", "up"], "bad.yaml: exercises: no such folder: {tmp}/nope",
         files={"bad.yaml": "name: {name}\nexercises: ./nope\n"}),
    Case("file-image-build-without-dockerfile", ["-f", "bad.yaml", "up"],
         "bad.yaml: images.0.build: no Dockerfile in {tmp}/img",
         files={"bad.yaml": "name: {name}\nimages:\n  - name: course/web:1\n    build: ./img\n", "img/README": "x"}),
    Case("file-option-overrides-are-checked-too", ["-f", "bad.yaml", "up", "--students", "0"],
         "--students: must be at least 1 (got 0)", files={"bad.yaml": VALID}),
    # issue 12's settings
    Case("file-bad-timezone", ["-f", "bad.yaml", "up"],
         "bad.yaml: timezone: 'Mars/Olympus' is not a time zone like Europe/Paris or UTC",
         files={"bad.yaml": "name: {name}\ntimezone: Mars/Olympus\n"}),
    Case("file-students-sudo-not-a-bool", ["-f", "bad.yaml", "up"],
         "bad.yaml: students_sudo: must be a valid boolean (got 'maybe')",
         files={"bad.yaml": "name: {name}\nstudents_sudo: maybe\n"}),
    Case("file-public-ports-past-65535", ["-f", "bad.yaml", "up"],
         "bad.yaml: ports: 50 students x 100 ports from local.ssh_port_base 60000 would end at public port 68000, "
         "past 65535: lower local.ssh_port_base or list fewer ports",
         files={"bad.yaml": "name: {name}\nstudents: 50\nports: ['8000-8099']\nlocal:\n  ssh_port_base: 60000\n"}),
    Case("option-students-push-public-ports-past-65535", ["-f", "bad.yaml", "up", "--students", "60"],
         "bad.yaml: ports: 60 students x 80 ports from local.ssh_port_base 60000 would end at public port 67800, "
         "past 65535: lower local.ssh_port_base or list fewer ports",
         files={"bad.yaml": "name: {name}\nports: ['8000-8079']\nlocal:\n  ssh_port_base: 60000\n"}),
    Case("file-too-many-ports-for-local", ["-f", "bad.yaml", "up"],
         "bad.yaml: ports: 201 ports per student, at most 100 on the local backend (each costs a proxy process on "
         "this machine): list only the ports the course publishes",
         files={"bad.yaml": "name: {name}\nports: ['8000-8200']\n"}),
    Case("file-bad-public-host", ["-f", "bad.yaml", "up"],
         "bad.yaml: local.public_host: 'my laptop' is not a host name or address",
         files={"bad.yaml": "name: {name}\nlocal:\n  public_host: my laptop\n"}),
    Case("reset-keep-home-with-hard", ["--name", "{name}", "reset", "student-01", "--hard", "--keep-home"],
         "--keep-home keeps the home folder in a soft reset: --hard replaces the whole machine"),
    # the situation
    Case("down-without-yes-and-no-tty", ["--name", "{name}", "down"],
         "`down` destroys classroom '{name}' and its students' work: add --yes to confirm", subprocess=True),
    Case("no-docker-engine", ["-f", "ok.yaml", "up"],
         r"cannot reach the Docker engine at unix:///nonexistent\.sock \(.*\): start it \(sudo systemctl start "
         r"docker, or scripts/setup-engine\.sh\) or set DOCKER_HOST", regex=True,
         files={"ok.yaml": VALID}, env={"DOCKER_HOST": "unix:///nonexistent.sock"}),
    Case("reset-in-no-classroom", ["--name", "{name}", "reset", "student-01"],
         "no classroom named '{name}' here: create it with `classroom up`"),
    Case("roster-of-no-classroom", ["--name", "{name}", "roster"],
         "no classroom named '{name}' here: create it with `classroom up`", engine=True),
    Case("status-of-no-classroom", ["--name", "{name}", "status", "--json"],
         "no classroom named '{name}' here: create it with `classroom up`", engine=True),
    Case("sheets-of-no-classroom", ["--name", "{name}", "sheets", "--out", "{tmp}/sheets"],
         "no classroom named '{name}' here: create it with `classroom up`", engine=True),
]


def _commands() -> set[str]:
    import typer

    from provision.cli import app

    return set(typer.main.get_command(app).commands)


def _fill(text: str, name: str, tmp: Path, port: int) -> str:
    return text.replace("{name}", name).replace("{tmp}", str(tmp)).replace("{port}", str(port))


@pytest.fixture(scope="module")
def client():
    """The engine if one answers (to check nothing was created on it), else None."""
    found = docker_client()
    yield found
    if found is not None:
        found.close()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.engine] if c.engine else [])
                                  for c in CASES])  # a case that reaches the engine is out of the fast tier
def test_bad_input_exits_2_with_one_line_and_changes_nothing(case: Case, cli, tmp_path, client):
    if case.engine and client is None:
        pytest.skip("this answer needs a Docker engine to look for the classroom on")
    if "reset" in case.args and "reset" not in _commands():
        pytest.skip("`classroom reset` does not exist yet")
    name = unique_name("t-bad")
    port = free_port_base(4)
    for relative, content in case.files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(content, name, tmp_path, port))
    args = [_fill(a, name, tmp_path, port) for a in case.args]
    run = cli(*args, env=case.env, subprocess=case.subprocess)
    assert_one_line(run, _fill(case.message, name, tmp_path, port), case.regex)
    assert run.stdout == "", run
    assert_nothing_created(cli, name, client)


def test_a_port_in_use_is_refused_before_anything_is_created(cli, tmp_path, engine):
    name = unique_name("t-bad")
    port = free_port_base(4)
    (tmp_path / "classroom.yaml").write_text(_fill(VALID, name, tmp_path, port))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + 2))
        squatter.listen()
        run = cli("up")
    assert_one_line(run, f"port {port + 2} (for student-02) is already in use on this machine: set "
                         "local.ssh_port_base to a free range (another classroom may use this one)", regex=False)
    assert_nothing_created(cli, name, engine)


def test_a_published_port_in_use_is_refused_before_anything_is_created(cli, tmp_path, engine):
    """Each student's course ports take a public port of this machine (ssh_port_base + 1001 …)."""
    name = unique_name("t-bad")
    port = free_port_base(4)
    (tmp_path / "classroom.yaml").write_text(_fill(VALID, name, tmp_path, port) + "ports: [80, 8080]\n")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + 1004))  # student-02's second port
        squatter.listen()
        run = cli("up")
    assert_one_line(run, f"port {port + 1004} (for student-02's port 8080) is already in use on this machine: set "
                         "local.ssh_port_base to a free range (students' ports start at ssh_port_base + 1001; "
                         "another classroom may use this one)", regex=False)
    assert_nothing_created(cli, name, engine)


def test_an_unknown_student_is_refused_and_nobody_is_touched(engine, tmp_path):
    # Its own classroom: the session's shared one is taken down by test_local_classroom.
    name = unique_name("t-unknown")
    write_classroom_file(tmp_path, name, students=2, port_base=free_port_base(3))
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    try:
        assert cli("up").exit_code == 0
        label = {"label": f"classroom.name={name}"}
        before = {c.name: c.id for c in engine.containers.list(all=True, filters=label)}
        run = cli("reset", "student-99")
        assert_one_line(run, "no student-99 in this classroom (students: student-01 … student-02)", regex=False)
        assert {c.name: c.id for c in engine.containers.list(all=True, filters=label)} == before
        for bad in ("12abc", "student-"):
            run = cli("reset", bad)
            assert_one_line(run, f"{bad!r} is not a student: use student-12 or 12", regex=False)
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)
