"""Issue 8, faults that must lose nothing, on the real engine: an honest reset, a host killed
during `up`, big exercise files, and course files that were never meant for students.

Each test makes what it needs and passes alone: the module's classroom (one student, a small
course) is set up by a fixture, and every test leaves the student's host as it found it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    REPO,
    Cli,
    free_port_base,
    load_image_into,
    remove_classroom_resources,
    save_image,
    ssh_connect,
    ssh_run,
    unique_name,
    write_classroom_file,
)

pytestmark = pytest.mark.engine

STUDENT_IMAGE = "student/own:1"  # an image the student made: not the course's


class Room:
    def __init__(self, name: str, folder: Path, engine):
        self.name, self.folder, self.engine = name, folder, engine
        self.cli = Cli(folder / "home", cwd=folder)

    def container(self, host: str = "student-01"):
        (found,) = self.engine.containers.list(
            all=True, filters={"label": [f"classroom.name={self.name}", f"classroom.host={host}"]})
        return found

    def inner(self, command: str, host: str = "student-01") -> tuple[int, str]:
        code, out = self.container(host).exec_run(["sh", "-c", command])
        return code, out.decode(errors="replace")

    def as_student(self, command: str, student: str = "student-01") -> str:
        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        row = next(r for r in json.loads(run.stdout) if r["student"] == student)
        session = ssh_connect(row["port"], row["user"], row["password"])
        try:
            code, out, err = ssh_run(session, command)
        finally:
            session.close()
        assert code == 0, f"{command!r} as {student}: {err}"
        return out

    def status(self) -> dict[str, dict]:
        run = self.cli("status", "--json")
        return {h["name"]: h for h in json.loads(run.stdout)["hosts"]}

    def student_leaves_work(self, tiny_image: str) -> None:
        """A container, a volume and an image of the student's own on the host's engine."""
        code, out = self.inner(f"docker image inspect {STUDENT_IMAGE} >/dev/null 2>&1 && echo have")
        if "have" not in out:
            self.engine.images.get(tiny_image).tag(STUDENT_IMAGE)
            load_image_into(self.container(), save_image(self.engine, STUDENT_IMAGE))
        self.as_student(f"docker run -d --name mine -v data:/data {STUDENT_IMAGE} sleep 1000 >/dev/null")

    def engine_view(self) -> str:
        """What a reset must have emptied, as the host's engine lists it."""
        code, out = self.inner("echo containers $(docker ps -aq | wc -l) volumes $(docker volume ls -q | wc -l); "
                               "docker image ls --format 'image {{.Repository}}:{{.Tag}}'")
        assert code == 0, out
        return out


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    name = unique_name("t-hf")
    exercises = folder / "exercises"
    (exercises / "part 1").mkdir(parents=True)
    (exercises / "part 1" / "README.md").write_text("# Part 1\n")
    (exercises / "run.sh").write_text("#!/bin/sh\necho hi\n")
    write_classroom_file(folder, name, students=1, port_base=free_port_base(3, low=40000, high=42000),
                         extra="exercises: ./exercises\n")
    room = Room(name, folder, engine)
    try:
        first = room.cli("up")
        if first.exit_code != 0:
            pytest.fail(f"`classroom up` of the fault-test classroom failed:\n{first}")
        yield room
    finally:
        room.cli("down", "--yes")
        remove_classroom_resources(engine, name)


# --- reset is honest -------------------------------------------------------------------------------
def test_reset_with_the_hosts_engine_killed_starts_it_and_cleans_for_real(room, tiny_image):
    room.student_leaves_work(tiny_image)
    code, out = room.inner("pkill -x dockerd; for i in $(seq 40); do docker info >/dev/null 2>&1 || exit 0; "
                           "sleep 0.25; done; exit 1")
    assert code == 0, "the host's dockerd did not stop"

    run = room.cli("reset", "student-01")

    assert run.exit_code == 0, run
    assert "student-01: clean" in run.stdout
    view = room.engine_view()
    assert "containers 0 volumes 0" in view, view
    assert STUDENT_IMAGE not in view
    assert room.status()["student-01"]["state"] == "ready"


WRAPPER = "/usr/local/bin/docker"  # before /usr/bin in root's PATH: an engine that misbehaves


def _misbehave(room: Room, volume_rm: str, rmi: str) -> None:
    """Put a `docker` in front of the real one: `volume rm` and `rmi` do what the test says."""
    script = ("#!/bin/sh\n"
              f'if [ "$1" = volume ] && [ "$2" = rm ]; then {volume_rm}; fi\n'
              f'if [ "$1" = rmi ]; then {rmi}; fi\n'
              'exec /usr/bin/docker "$@"\n')
    code, out = room.inner(f"cat > {WRAPPER} <<'EOF'\n{script}EOF\nchmod 755 {WRAPPER}")
    assert code == 0, out


def test_a_reset_whose_wipe_fails_or_leaves_anything_is_not_clean(room, tiny_image):
    try:
        room.student_leaves_work(tiny_image)
        _misbehave(room, volume_rm="echo 'Error response from daemon: remove data: volume is in use' >&2; exit 1",
                   rmi=":")
        run = room.cli("reset", "1")
        assert run.exit_code == 3, run
        assert "clean" not in run.stdout
        assert "student-01" in run.stderr and "volume is in use" in run.stderr

        # An engine that says yes and does nothing: the verification finds what is left.
        room.student_leaves_work(tiny_image)
        _misbehave(room, volume_rm="exit 0", rmi="exit 0")
        run = room.cli("reset", "1")
        assert run.exit_code == 3, run
        assert "clean" not in run.stdout
        assert "not clean: the reset left 1 volume (data), 1 image (student/own:1)" in run.stderr, run
    finally:
        room.inner(f"rm -f {WRAPPER}")
    run = room.cli("reset", "1")
    assert run.exit_code == 0, run
    assert "student-01: clean" in run.stdout
    assert "volumes 0" in room.engine_view()


def test_up_restores_an_exercises_folder_the_student_removed(room):
    room.as_student("rm -rf ~/exercises")
    assert room.status()["student-01"]["state"] == "failed"

    run = room.cli("up")

    assert run.exit_code == 0, run
    assert "exercises: 2 added" in run.stdout, run
    assert room.as_student("cat ~/exercises/'part 1'/README.md; ls ~/exercises") == "# Part 1\npart 1\nrun.sh\n"
    assert room.status()["student-01"]["state"] == "ready"


def process_env(cli: Cli) -> dict[str, str]:
    """The environment `cli(..., subprocess=True)` gives the command, for a process we watch."""
    env = dict(os.environ)
    for key, value in cli.environment().items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# --- a killed host fails fast ----------------------------------------------------------------------
def _connecting_to(port: int) -> bool:
    """Whether any TCP connection to 127.0.0.1:port exists (not the listener): `up` is dialing it."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[2].endswith(f":{port:04X}") and fields[3] != "0A":
                return True
    return False


def test_a_host_killed_during_up_fails_fast_and_the_next_up_repairs_it(engine, tmp_path):
    name = unique_name("t-hfk")
    base = free_port_base(4, low=42000, high=44000)
    write_classroom_file(tmp_path, name, students=3, port_base=base)
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    env = process_env(cli)
    try:
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "provision.cli", "up"], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # student-02's host exists and `up` is dialing its SSH port: kill it now.
        killed = False
        while process.poll() is None and time.monotonic() - started < 120:
            if _connecting_to(base + 2):
                (host,) = engine.containers.list(filters={"label": [f"classroom.name={name}",
                                                                   "classroom.host=student-02"]})
                host.kill()
                killed = True
                break
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=300)
        seconds = time.monotonic() - started
        assert killed, f"`up` never dialed student-02:\n{stdout}\n{stderr}"
        rows = {line.split()[1]: line for line in stdout.splitlines() if line.startswith("│ student-")}
        print(f"up with student-02 killed while provisioning ended in {seconds:.1f} s: {rows.get('student-02')}")

        assert process.returncode == 3, f"{stdout}\n{stderr}"
        assert seconds < 60, f"up took {seconds:.0f} s: it waited for a machine that had stopped"
        assert "student-02's machine stopped (exited)" in rows["student-02"], stdout
        assert "ready" in rows["student-01"] and "ready" in rows["student-03"], stdout
        assert "student-02" in stderr and "student-01" not in stderr

        run = cli("up")
        assert run.exit_code == 0, run
        hosts = json.loads(cli("status", "--json").stdout)["hosts"]
        assert [(h["name"], h["state"]) for h in hosts] == [
            ("student-01", "ready"), ("student-02", "ready"), ("student-03", "ready")]
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


# --- big exercise files stream; private files are refused ---------------------------------------
BIG = 300 << 20

# Runs the command given after it; prints the peak RSS (kB) of that process, its only child.
PEAK_RSS = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[1:]).returncode\n"
            "print('peak-rss-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(code)\n")


def run_measured(cli: Cli, cwd: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """`classroom ARGS` in a process of its own; what it did, and its peak resident memory in bytes."""
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "provision.cli", *args],
                          cwd=cwd, env={**process_env(cli), **env}, capture_output=True, text=True, timeout=600)
    peak = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("peak-rss-kb")))
    return done, peak * 1024


def test_a_big_exercise_file_streams_and_is_sent_once(engine, tmp_path):
    name = unique_name("t-hfb")
    exercises = tmp_path / "exercises"
    exercises.mkdir()
    (exercises / "notes.md").write_text("read me\n")
    with open(exercises / "disk.img", "wb") as handle:  # sparse: no disk used on this side
        handle.truncate(BIG)
    write_classroom_file(tmp_path, name, students=1, port_base=free_port_base(3, low=44000, high=45000),
                         extra="exercises: ./exercises\n")
    room = Room(name, tmp_path, engine)
    cli = room.cli
    cache = {"XDG_CACHE_HOME": str(tmp_path / "cache")}  # packed here on every run, removed after it
    try:
        done, peak = run_measured(cli, tmp_path, cache, "up")
        print(f"first up: peak RSS {peak >> 20} MB with a {BIG >> 20} MB exercise file")
        assert done.returncode == 0, done.stdout + done.stderr
        assert peak < BIG // 2, f"peak RSS {peak >> 20} MB: the {BIG >> 20} MB file was held in memory"
        size = room.as_student("stat -c %s ~/exercises/disk.img").strip()
        assert size == str(BIG)
        before = room.inner("stat -c %Y.%i ~student-01/exercises/disk.img /var/lib/classroom/exercises/tree/disk.img")

        done, peak = run_measured(cli, tmp_path, cache, "up")
        print(f"second up: peak RSS {peak >> 20} MB")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "unchanged" in done.stdout and "exercises" not in done.stdout, done.stdout
        assert peak < BIG // 2
        assert room.inner("stat -c %Y.%i ~student-01/exercises/disk.img "
                          "/var/lib/classroom/exercises/tree/disk.img") == before
        assert room.inner("ls -A /var/lib/classroom/exercises/upload | wc -l")[1].strip() == "0"

        done, peak = run_measured(cli, tmp_path, cache, "reset", "1")
        print(f"reset: peak RSS {peak >> 20} MB")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "student-01: clean" in done.stdout
        assert peak < BIG // 2
        assert room.as_student("stat -c %s ~/exercises/disk.img").strip() == str(BIG)
        # The checks skip hashing what the copy stamped, yet still see a student's edit.
        assert room.status()["student-01"]["state"] == "ready"
        room.as_student("echo more >> ~/exercises/notes.md")
        assert room.status()["student-01"]["detail"] == "exercises: 1 changed, 0 deleted by the student"
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


def test_a_course_file_readable_only_by_its_owner_is_refused(engine, tmp_path):
    name = unique_name("t-hfp")
    exercises = tmp_path / "exercises"
    (exercises / "keys").mkdir(parents=True)
    (exercises / "lab.md").write_text("do this\n")
    (exercises / "keys" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (exercises / "keys" / "id_ed25519").chmod(0o600)
    write_classroom_file(tmp_path, name, students=1, port_base=free_port_base(3, low=44000, high=45000),
                         extra="exercises: ./exercises\n")
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    try:
        run = cli("up")
        assert run.exit_code == 2, run
        assert run.error_lines == [
            "classroom: error: exercises: 1 file(s) readable only by their owner would be copied to every "
            "student: keys/id_ed25519. If they belong to the course, `chmod a+r` them; otherwise move them "
            "out of the exercises folder"]
        assert not engine.containers.list(all=True, filters={"label": f"classroom.name={name}"})
        assert not (tmp_path / "home" / name / "passwords.json").exists()
    finally:
        remove_classroom_resources(engine, name)


def test_a_course_folder_others_cannot_enter_is_refused_with_its_exercises(engine, tmp_path):
    """A 0700 folder hides its 0644 files from everyone but its owner, as a 0600 file would."""
    name = unique_name("t-hfd")
    exercises = tmp_path / "exercises"
    # (not `solutions/` or `checks/`: those top-level folders are never copied, private or not)
    (exercises / "answers").mkdir(parents=True)
    (exercises / "lab.md").write_text("do this\n")
    (exercises / "answers" / "answers.md").write_text("the answers\n")
    (exercises / "answers").chmod(0o700)
    write_classroom_file(tmp_path, name, students=1, port_base=free_port_base(3, low=44000, high=45000),
                         extra="exercises: ./exercises\n")
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    try:
        run = cli("up")
        assert run.exit_code == 2, run
        assert run.error_lines == [
            "classroom: error: exercises: 1 file(s) or folder(s) readable only by their owner would be copied to "
            "every student: answers/. If they belong to the course, `chmod a+rX` them; otherwise move them "
            "out of the exercises folder"]
        assert not engine.containers.list(all=True, filters={"label": f"classroom.name={name}"})
    finally:
        remove_classroom_resources(engine, name)
