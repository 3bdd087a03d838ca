"""The orchestration of `up`, `status`, `reset` and `down` (provision/commands.py), on an
in-memory backend and hosts that need no SSH (tests/fakes.py): no engine, milliseconds.

What the engine tests (test_local_classroom.py, test_faults.py, ...) prove end to end, these
pin down on the decisions alone: which hosts get made, what converges, how one failed host
becomes exit 3 while the others go on, and what Ctrl-C leaves behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import unique_name
from fakes import FakeBackend, FakeHostWork

from provision import backends, commands
from provision.commands import Classroom
from provision.config import ClassroomConfig
from provision.errors import BadInput
from provision.model import Leftover, MachineState
from provision.state import ClassroomState

pytestmark = pytest.mark.usefixtures("quick_password_hashes")  # conftest: no test here checks the rounds

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_room(tmp_path):
    """`make_room(students=3)`: a classroom of that size on the same backend, hosts and state
    folder each time (a second call is the trainer's next command)."""
    name = unique_name("orch")
    backend, remote = FakeBackend(ClassroomState(name, tmp_path / "home")), FakeHostWork()

    def make(students: int = 3) -> Classroom:
        config = ClassroomConfig(name=name, students=students, swarm={"nodes": 0})
        return Classroom.open(config, backend=backend, remote=remote, state=ClassroomState(name, tmp_path / "home"))

    make.backend, make.remote = backend, remote
    return make


def names(items) -> list[str]:
    return [item.name for item in items]


# --- up ------------------------------------------------------------------------------------------------
def test_up_makes_one_host_per_student_and_provisions_each(make_room):
    result = commands.up(make_room(3))
    assert make_room.backend.created == ["student-01", "student-02", "student-03"]
    assert result.created == ["student-01", "student-02", "student-03"]
    assert names(result.hosts) == result.created and not result.failed
    assert make_room.remote.provisioned == result.created
    assert result.hosts[0].changes == ["account student-01"]
    assert result.sheets_dir is not None and (result.sheets_dir / "index.html").is_file()


def test_a_second_up_makes_nothing_and_changes_nothing(make_room):
    commands.up(make_room(3))
    again = commands.up(make_room(3))
    assert make_room.backend.created == ["student-01", "student-02", "student-03"]  # no new machine
    assert again.created == [] and not again.failed
    assert [host.changes for host in again.hosts] == [[], [], []]


def test_more_students_adds_only_the_new_hosts(make_room):
    commands.up(make_room(2))
    first = {m.name: m.machine_id for m in make_room.backend.machines()}
    grown = commands.up(make_room(4))
    assert grown.created == ["student-03", "student-04"]
    assert make_room.backend.created == ["student-01", "student-02", "student-03", "student-04"]
    kept = {m.name: m.machine_id for m in make_room.backend.machines() if m.name in first}
    assert kept == first  # the existing machines are the same ones
    assert {h.name: h.changes for h in grown.hosts if h.name in first} == {"student-01": [], "student-02": []}


def test_fewer_students_never_removes_a_host(make_room):
    commands.up(make_room(3))
    smaller = commands.up(make_room(2))
    assert names(smaller.hosts) == ["student-01", "student-02", "student-03"]
    assert ("destroy", ()) not in make_room.backend.calls and len(make_room.backend.machines()) == 3


def test_a_host_the_backend_cannot_make_fails_alone(make_room):
    make_room.backend.refuse = {"student-02": "AWS: InsufficientInstanceCapacity"}
    result = commands.up(make_room(3))
    assert names(result.failed) == ["student-02"]
    assert result.failed[0].error == "AWS: InsufficientInstanceCapacity"
    assert [h.ok for h in result.hosts if h.name != "student-02"] == [True, True]

    make_room.backend.refuse = {}  # the next `up` tries it again, and only it
    again = commands.up(make_room(3))
    assert again.created == ["student-02"] and not again.failed


def test_a_host_whose_provisioning_fails_fails_alone_and_the_next_up_repairs_it(make_room):
    make_room.remote.broken = {"student-02": "apt: connection reset\nE: the engine did not start"}
    result = commands.up(make_room(3))
    assert names(result.failed) == ["student-02"]
    assert result.failed[0].error == "E: the engine did not start"  # the last line: where tools say why
    assert [h.ok for h in result.hosts] == [True, False, True]

    make_room.remote.broken = {}
    again = commands.up(make_room(3))
    assert not again.failed and again.created == []
    assert {h.name: h.changes for h in again.hosts}["student-02"] == ["account student-02"]


def test_a_host_that_fails_its_checks_is_not_ready(make_room):
    make_room.remote.unhealthy = {"student-01"}
    result = commands.up(make_room(2))
    assert names(result.failed) == ["student-01"]
    assert result.failed[0].error == "check failed: docker (docker does not answer)"


def test_a_stopped_host_is_started_not_made_again(make_room):
    commands.up(make_room(2))
    make_room.backend.stop("student-02")
    result = commands.up(make_room(2))
    assert make_room.backend.created == ["student-01", "student-02"]
    assert not result.failed and all(m.running for m in make_room.backend.machines())


def test_only_the_hosts_this_run_made_are_provisioned_as_new(make_room):
    """A new host gets the course's images before its SSH answers; a host that was there (even
    stopped, with its disk) is compared first, so it must never be taken for a new one."""
    commands.up(make_room(2))
    assert make_room.remote.provisioned_new == ["student-01", "student-02"]
    make_room.backend.stop("student-02")
    commands.up(make_room(3))
    assert make_room.remote.provisioned_new == ["student-01", "student-02", "student-03"]
    commands.reset(make_room(3), ["1"])
    commands.reset(make_room(3), ["2"], hard=True)
    assert make_room.remote.provisioned_new == ["student-01", "student-02", "student-03", "student-02"]


def test_every_host_refused_is_exit_3_not_bad_input(cli, tmp_path, monkeypatch):
    """Nothing made is still a partial result (the next `up` retries), not "nothing changed"."""
    refused = {"student-01": "no capacity", "student-02": "no capacity"}
    monkeypatch.setitem(backends.BACKEND_FACTORIES, "local", lambda config, state: FakeBackend(state, refuse=refused))
    run = cli("--name", unique_name("orch"), "up", "--students", "2", "--swarm-nodes", "0")
    assert run.exit_code == 3, run
    assert "2 host(s) not ready: student-01, student-02" in run.stdout + run.stderr


# --- Ctrl-C --------------------------------------------------------------------------------------------
def test_ctrl_c_during_provisioning_leaves_a_classroom_the_next_up_converges(make_room):
    make_room.remote.interrupt_on = "student-02"
    with pytest.raises(KeyboardInterrupt):
        commands.up(make_room(3))
    make_room.remote.interrupt_on = None
    again = commands.up(make_room(3))  # the lock was let go; the machines made are kept
    assert not again.failed and make_room.backend.created == ["student-01", "student-02", "student-03"]


@pytest.mark.parametrize("interruption", ["errors.Interrupted", "KeyboardInterrupt"])
def test_ctrl_c_in_a_backend_call_is_exit_130_and_one_line(tmp_path, interruption):
    """Through the console entry in a process of its own (the CLI ends it at once on Ctrl-C).
    `Interrupted` is what the CLI's SIGINT handler raises; a bare KeyboardInterrupt (raised by a
    library, or outside the main thread) must read the same, though Typer swallows it."""
    script = ("import fakes; from provision import backends, cli, errors\n"
              "backends.BACKEND_FACTORIES['local'] = lambda config, state: fakes.FakeBackend(\n"
              f"    state, interrupt={{'ensure'}}, interruption={interruption})\n"
              "cli.main(['--name', 'orch-ctrl-c', 'up', '--students', '2', '--swarm-nodes', '0'])\n")
    env = {**os.environ, "CLASSROOM_HOME": str(tmp_path / "home"), "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}",
           "NO_COLOR": "1", "TERM": "dumb"}
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 130, run
    assert run.stderr.splitlines()[-1].startswith("classroom: interrupted")
    assert run.stderr.splitlines()[-1].endswith("run `classroom up` again, it converges")
    assert "Traceback" not in run.stderr and len([line for line in run.stderr.splitlines()
                                                   if line.startswith("classroom:")]) == 1


# --- status --------------------------------------------------------------------------------------------
def test_status_says_ready_stopped_and_missing(make_room):
    commands.up(make_room(3))
    make_room.backend.stop("student-02")
    make_room.backend.remove("student-03")
    result = commands.status(make_room(3))
    assert [(h.name, h.state) for h in result.hosts] == [
        ("student-01", "ready"), ("student-02", "exited"), ("student-03", "missing")]
    assert names(result.not_ready) == ["student-02", "student-03"]
    shown = json.loads(json.dumps(result.as_json()))
    assert shown["hosts"][0] == {"name": "student-01", "role": "student", "student": "student-01",
                                 "address": "127.0.0.1", "port": 2201, "state": "ready",
                                 "checks": {"admin": True, "ssh": True, "docker": True}, "detail": None}


def test_status_of_an_unhealthy_host_is_failed_with_its_reason(make_room):
    commands.up(make_room(2))
    make_room.remote.unhealthy = {"student-02"}
    result = commands.status(make_room(2))
    host = result.hosts[1]
    assert (host.state, host.checks["docker"], host.detail) == ("failed", False, "docker does not answer")


# --- reset ---------------------------------------------------------------------------------------------
def test_soft_reset_wipes_only_the_named_host(make_room):
    commands.up(make_room(3))
    machines = {m.name: m.machine_id for m in make_room.backend.machines()}
    reports = commands.reset(make_room(3), ["2"])
    assert [(r.name, r.ok, r.hard) for r in reports] == [("student-02", True, False)]
    assert make_room.remote.wiped == ["student-02"]
    assert {m.name: m.machine_id for m in make_room.backend.machines()} == machines  # same machines


def test_hard_reset_replaces_the_machine(make_room):
    commands.up(make_room(2))
    old = {m.name: m.machine_id for m in make_room.backend.machines()}
    (report,) = commands.reset(make_room(2), ["student-01"], hard=True)
    assert report.ok and make_room.remote.wiped == []
    new = {m.name: m.machine_id for m in make_room.backend.machines()}
    assert new["student-01"] != old["student-01"] and new["student-02"] == old["student-02"]


def test_a_reset_that_fails_its_checks_is_reported(make_room):
    commands.up(make_room(2))
    make_room.remote.unhealthy = {"student-01"}
    (report,) = commands.reset(make_room(2), ["1"])
    assert not report.ok and report.error == "check failed: docker (docker does not answer)"


# --- down ----------------------------------------------------------------------------------------------
def test_down_removes_everything_and_verifies(make_room):
    room = make_room(2)
    commands.up(room)
    result = commands.down(make_room(2))
    assert sorted(names(result.removed)) == ["student-01", "student-02"] and result.leftovers == []
    assert not room.state.path.exists() and make_room.backend.machines() == []
    assert commands.down(make_room(2)).already_gone


def test_down_that_leaves_something_says_so_and_keeps_the_state(make_room):
    room = make_room(1)
    commands.up(room)
    make_room.backend.stuck = [Leftover("volume", "data")]
    result = commands.down(make_room(1))
    assert result.leftovers == [Leftover("volume", "data")]
    assert room.state.path.exists()  # the secrets stay while something of the classroom does


def test_machine_states_keep_their_strings():
    assert MachineState("exited") == "exited" and json.dumps(MachineState.RUNNING) == '"running"'
    assert MachineState("something new") is MachineState.UNKNOWN


# --- the state's record --------------------------------------------------------------------------------
OLD_RECORD = """{
  "aws": {
    "hosts": [
      {
        "name": "student-01",
        "role": "student",
        "student": "student-01"
      }
    ],
    "region": "eu-west-3"
  },
  "backend": "aws",
  "cache": [],
  "course": {
    "digest": null,
    "file": null
  },
  "created_at": "2026-01-05T08:00:00+00:00",
  "expires_at": "2026-01-05T16:00:00+00:00",
  "from_a_newer_version": {
    "kept": true
  },
  "students": 1,
  "swarm_nodes": 0
}"""


def test_the_record_is_read_once_typed_and_written_back_unchanged(tmp_path):
    state = ClassroomState("old", tmp_path)
    state.path.mkdir(parents=True)
    (state.path / "classroom.json").write_text(OLD_RECORD)
    meta = state.meta()
    assert (meta.backend, meta.students, meta.aws.region, meta.aws.hosts[0].role) == ("aws", 1, "eu-west-3", "student")
    assert meta.expires_at.isoformat() == "2026-01-05T16:00:00+00:00"
    state.update_meta(students=1)  # a write keeps every key, and the shape, as they were
    assert (state.path / "classroom.json").read_text() == OLD_RECORD


def test_a_record_with_a_wrong_value_is_refused_naming_the_file(tmp_path, make_room):
    room = make_room(2)
    commands.up(room)
    path = room.state.path / "classroom.json"
    path.write_text(path.read_text().replace('"students": 2', '"students": "many"'))
    with pytest.raises(BadInput, match=r"classroom\.json is damaged \(students: .*\): `classroom down` still"):
        commands.status(make_room(2))
    assert commands.down(make_room(2)).leftovers == []  # down is never blocked by it


def test_exercise_changes_are_parsed_at_the_edge_and_rendered_once():
    from provision.exercises import ExerciseChange, parse_sync_output
    from provision.provisioning import summarize_exercise_changes

    done = parse_sync_output("added a.md\nkept b.md\n\x1b[31mrm -rf /\nadded c.md\ndeleted d.md\n")
    assert done == {ExerciseChange.ADDED: ["a.md", "c.md"], ExerciseChange.KEPT: ["b.md"],
                    ExerciseChange.DELETED: ["d.md"]}  # what is not a change line is dropped
    assert summarize_exercise_changes(done) == [
        "exercises: 2 added; 1 kept (changed by the student): b.md; 1 left deleted by the student: d.md"]
    assert summarize_exercise_changes({}) == []


# --- progress --------------------------------------------------------------------------------------------
def test_progress_has_one_row_per_student_not_one_per_machine_they_own(tmp_path, monkeypatch):
    """A student with a Swarm cluster of their own owns three machines: the matrix still has one
    row for them, from their own host."""
    from provision import course_checks

    (tmp_path / "checks" / "01-hello").mkdir(parents=True)
    (tmp_path / "checks" / "01-hello" / "check.sh").write_text("test -f done.txt\n")
    name = unique_name("orch")
    config = ClassroomConfig(name=name, students=2, swarm={"nodes": 3}, checks=tmp_path / "checks")
    room = Classroom.open(config, backend=FakeBackend(ClassroomState(name, tmp_path / "home")), remote=FakeHostWork(),
                          state=ClassroomState(name, tmp_path / "home"))
    commands.up(room)
    asked = []
    monkeypatch.setattr(course_checks, "check_student",
                        lambda machine, access, student, checks: asked.append(machine.name) or {"01-hello": True})
    result = course_checks.progress(room)
    assert [(row.student, row.host) for row in result.students] == [("student-01", "student-01"),
                                                                    ("student-02", "student-02")]
    assert sorted(asked) == ["student-01", "student-02"]  # their own hosts only, never a node
