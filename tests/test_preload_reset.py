"""Issue 3 on the real engine: images and exercises preloaded over SSH, reset soft and hard.

One classroom of two students, with a course of two small images built here and an exercise
folder full of awkward names. The module's fixture makes the classroom once (`up`); each test
starts from that state, and a test that changes the course or a student's files puts them back
(`restore`), so that any test passes alone or in any order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import (
    BUSYBOX,
    Cli,
    free_port_base,
    remove_classroom_resources,
    ssh_connect,
    ssh_run,
    unique_name,
    write_classroom_file,
)

pytestmark = pytest.mark.engine

IMAGES = ("course-test/alpha:1", "course-test/beta:1")


def make_course(folder: Path) -> Path:
    """Two images built from the course (busybox + a file each) and an exercise folder."""
    for name, marker in (("alpha", "A"), ("beta", "B")):
        image_dir = folder / "images" / name
        image_dir.mkdir(parents=True)
        shutil.copy(BUSYBOX, image_dir / "busybox")
        (image_dir / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            f'RUN ["/bin/sh", "-c", "echo {marker} > /marker"]\nCMD ["sh"]\n')
    ex = folder / "exercises"
    (ex / "chapter 1" / "nested deeper").mkdir(parents=True)
    (ex / "empty folder").mkdir()
    (ex / "run.sh").write_text("#!/bin/sh\necho hello\n")
    (ex / "run.sh").chmod(0o755)
    (ex / "blob.bin").write_bytes(os.urandom(1 << 20))
    (ex / ".dotfile").write_text("hidden\n")
    (ex / "chapter 1" / "réseau à été.txt").write_text("accents\n")
    (ex / "chapter 1" / "nested deeper" / "Dockerfile").write_text("FROM debian:jessie\n")
    return ex


def expected_files(folder: Path) -> dict[str, tuple[str, str]]:
    """relative path -> (sha256 or 'dir', octal mode)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        mode = oct(stat.S_IMODE(path.stat().st_mode))[2:]
        found[rel] = ("dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest(), mode)
    return found


# Prints "type mode owner sha256-or-dir path" for every entry of a student's ~/exercises.
LIST_FILES = """cd ~/exercises && find . -mindepth 1 | sort | while IFS= read -r p; do
  if [ -d "$p" ]; then s=dir; else s=$(sha256sum < "$p" | cut -c1-64); fi
  printf '%s\t%s\t%s\n' "$(stat -c '%a %U' "$p")" "$s" "${p#./}"
done"""


class Course:
    def __init__(self, folder: Path, cli: Cli, name: str, client, pristine: Path):
        self.folder, self.cli, self.name, self.client = folder, cli, name, client
        self.exercises = folder / "exercises"
        self.pristine = pristine  # a copy of the exercises as the course first had them
        self.first_up = None  # the fixture's `up`

    def restore(self, *students: str) -> None:
        """The course's exercises as they first were, and these students' hosts soft-reset to them."""
        shutil.rmtree(self.exercises)
        shutil.copytree(self.pristine, self.exercises)  # copy2: modes kept
        if students:
            run = self.cli("reset", *students)
            assert run.exit_code == 0, run

    def up(self, *args: str):
        return self.cli("up", *args)

    def roster(self) -> dict[str, dict]:
        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        return {row["student"]: row for row in json.loads(run.stdout)}

    def student(self, name: str):
        row = self.roster()[name]
        return ssh_connect(row["port"], row["user"], row["password"])

    def as_student(self, name: str, command: str) -> str:
        session = self.student(name)
        try:
            code, out, err = ssh_run(session, command)
        finally:
            session.close()
        assert code == 0, f"{command!r} as {name}: {err}"
        return out

    def host_files(self, student: str) -> dict[str, tuple[str, str, str]]:
        out = self.as_student(student, "sh -c " + _quote(LIST_FILES))
        files = {}
        for line in out.splitlines():
            mode_owner, digest, path = line.split("\t")
            mode, owner = mode_owner.split()
            files[path] = (digest, mode, owner)
        return files

    def container(self, host: str):
        (found,) = self.client.containers.list(
            all=True, filters={"label": [f"classroom.name={self.name}", f"classroom.host={host}"]})
        return found

    def inner(self, host: str, command: str) -> str:
        code, out = self.container(host).exec_run(["sh", "-c", command])
        assert code == 0, out.decode(errors="replace")
        return out.decode(errors="replace")


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


@pytest.fixture(scope="module")
def course(engine, tmp_path_factory):
    if not BUSYBOX.is_file():
        pytest.skip(f"{BUSYBOX} is missing: apt-get install busybox-static (scripts/test.sh does)")
    folder = tmp_path_factory.mktemp("preload")
    name = unique_name("t-pre")
    make_course(folder)
    extra = ("images:\n" + "".join(f"  - name: {image}\n    build: ./images/{image.split('/')[1].split(':')[0]}\n"
                                   for image in IMAGES) + "exercises: ./exercises\n")
    write_classroom_file(folder, name, students=2, port_base=free_port_base(4), extra=extra)
    pristine = tmp_path_factory.mktemp("pristine") / "exercises"
    shutil.copytree(folder / "exercises", pristine)
    cli = Cli(folder / "home", cwd=folder)
    course = Course(folder, cli, name, engine, pristine)
    try:
        course.first_up = course.up()
        yield course
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


def test_up_preloads_images_by_id_and_exact_exercises(course):
    assert course.first_up.exit_code == 0, course.first_up
    instructor = {image: course.client.images.get(image).id for image in IMAGES}
    for host in ("student-01", "student-02"):
        for image, image_id in instructor.items():
            assert course.inner(host, f"docker image inspect --format '{{{{.Id}}}}' {image}").strip() == image_id
        files = course.host_files(host)
        expected = expected_files(course.exercises)
        assert set(files) == set(expected)
        for path, (digest, mode) in expected.items():
            assert files[path] == (digest, mode, host), path
    # The course's images run for the student, without any registry.
    assert course.as_student("student-01", "docker run --rm course-test/alpha:1 cat /marker").strip() == "A"


def test_status_reports_images_and_exercises(course):
    run = course.cli("status", "--json")
    assert run.exit_code == 0, run
    hosts = json.loads(run.stdout)["hosts"]
    assert [h["checks"] for h in hosts] == [
        {"admin": True, "ssh": True, "docker": True, "images": True, "exercises": True}] * 2


def test_second_up_transfers_nothing_and_changes_nothing(course):
    before = course.inner("student-01", "stat -c %Y /home/student-01/exercises/blob.bin")
    run = course.up()
    assert run.exit_code == 0, run
    assert run.stdout.count("unchanged") == 2, run
    assert course.inner("student-01", "stat -c %Y /home/student-01/exercises/blob.bin") == before
    assert course.inner("student-01", "ls /var/tmp/classroom 2>/dev/null | wc -l").strip() == "0"


def test_soft_reset_restores_one_student_and_touches_no_one_else(course):
    try:
        _soft_reset_touches_only_its_student(course)
    finally:  # student-01's own work goes: the next test starts from the classroom `up` made
        course.as_student("student-01", "docker rm -f mine >/dev/null 2>&1; rm -f ~/notes.txt")


def _soft_reset_touches_only_its_student(course):
    # student-01 works: a running container and a file of their own.
    course.as_student("student-01", "docker run -d --name mine course-test/alpha:1 sleep 1000 && echo x > ~/notes.txt")
    keeper = course.inner("student-01", "docker ps -q --filter name=mine").strip()
    # student-02 makes a mess of everything a reset must undo.
    course.as_student("student-02", "; ".join([
        "set -e",
        "docker run -d --name web course-test/alpha:1 sleep 1000",
        "docker volume create data",
        "docker network create lab",
        "mkdir /tmp/b && cd /tmp/b && printf 'FROM course-test/beta:1\\nRUN echo x > /y\\n' > Dockerfile",
        "docker build -q -t extra:2 /tmp/b",
        "docker tag course-test/alpha:1 my-alpha:1",
        "echo edited >> ~/exercises/run.sh",
        "rm ~/exercises/blob.bin",
        "echo new > ~/exercises/added.txt",
        "docker swarm init --advertise-addr 127.0.0.1 >/dev/null",
    ]))
    run = course.cli("reset", "student-02")
    assert run.exit_code == 0, run
    assert "student-02" in run.stdout

    state = course.inner("student-02", "docker ps -aq | wc -l; docker volume ls -q | wc -l; "
                                       "docker network ls -q --filter type=custom | wc -l; "
                                       "docker info --format '{{.Swarm.LocalNodeState}}'; "
                                       "docker image ls --format '{{.Repository}}:{{.Tag}}' | sort").split()
    assert state == ["0", "0", "0", "inactive", *sorted(IMAGES)]
    files = course.host_files("student-02")
    expected = expected_files(course.exercises)
    assert {p: (d, m) for p, (d, m, _o) in files.items()} == expected
    # Nobody else was touched.
    assert course.inner("student-01", "docker ps -q --filter name=mine").strip() == keeper
    assert course.inner("student-01", "cat /home/student-01/notes.txt").strip() == "x"
    # Same password as before.
    assert course.as_student("student-02", "id -un").strip() == "student-02"


def test_up_keeps_a_file_the_student_edited(course):
    try:
        course.as_student("student-01", "echo 'my answer' >> ~/exercises/run.sh")
        run = course.up()
        assert run.exit_code == 0, run
        assert course.as_student("student-01", "tail -1 ~/exercises/run.sh").strip() == "my answer"
        status = json.loads(course.cli("status", "--json").stdout)
        assert status["hosts"][0]["checks"]["exercises"] is True
    finally:
        course.restore("student-01")


def test_hard_reset_gives_a_new_machine_with_the_same_password(course):
    old_id = course.container("student-02").id
    password = course.roster()["student-02"]["password"]
    run = course.cli("reset", "2", "--hard")
    assert run.exit_code == 0, run
    assert course.container("student-02").id != old_id
    assert course.roster()["student-02"]["password"] == password
    assert course.as_student("student-02", "docker run --rm course-test/beta:1 cat /marker").strip() == "B"
    assert course.host_files("student-02").keys() == expected_files(course.exercises).keys()


def test_a_broken_engine_on_one_host_is_reported_and_repaired_by_the_next_up(course):
    # The engine stops and cannot be restarted: the host must be named, the others finish.
    course.inner("student-02", "mv /usr/sbin/dockerd /usr/sbin/dockerd.off; pkill -x dockerd; sleep 1; true")
    try:
        run = course.up()
        assert run.exit_code == 3, run
        assert "student-02" in run.stderr and "not ready" in run.stderr
        assert "student-01" not in run.stderr
    finally:
        # The engine is back in place (a trainer fixed it): the next `up` repairs only that host.
        course.inner("student-02", "test -e /usr/sbin/dockerd || mv /usr/sbin/dockerd.off /usr/sbin/dockerd")
    run = course.up()
    assert run.exit_code == 0, run
    assert course.as_student("student-02", "docker run --rm course-test/alpha:1 cat /marker").strip() == "A"


def test_unknown_student_changes_nothing(course):
    before = {c.name: c.id for c in course.client.containers.list(
        all=True, filters={"label": f"classroom.name={course.name}"})}
    run = course.cli("reset", "student-99")
    assert run.exit_code == 2
    assert run.stderr.strip().splitlines() == ["classroom: error: no student-99 in this classroom "
                                               "(students: student-01 … student-02)"]
    after = {c.name: c.id for c in course.client.containers.list(
        all=True, filters={"label": f"classroom.name={course.name}"})}
    assert after == before


def test_exec_runs_everywhere_and_fails_when_one_host_fails(course):
    run = course.cli("exec", "--", "hostname")
    assert run.exit_code == 0, run
    assert "student-01" in run.stdout and "student-02" in run.stdout
    run = course.cli("exec", "--hosts", "student-02", "--", "sh -c 'exit 4'")
    assert run.exit_code == 1
    assert "student-02" in run.stderr


def test_up_brings_course_updates_but_keeps_student_edits(course):
    try:
        _up_brings_course_updates_but_keeps_student_edits(course)
    finally:
        course.restore("student-01", "student-02")


def _up_brings_course_updates_but_keeps_student_edits(course):
    (course.exercises / ".dotfile").write_text("hidden, second edition\n")  # updated by the trainer
    (course.exercises / "chapter 2").mkdir()
    (course.exercises / "chapter 2" / "new.txt").write_text("new chapter\n")  # added by the trainer
    course.as_student("student-01", "echo 'mine' > ~/exercises/chapter\\ 1/réseau\\ à\\ été.txt")
    run = course.up()
    assert run.exit_code == 0, run
    assert course.as_student("student-01", "cat ~/exercises/.dotfile").strip() == "hidden, second edition"
    assert course.as_student("student-01", "cat ~/exercises/chapter\\ 2/new.txt").strip() == "new chapter"
    assert course.as_student("student-01", "cat ~/exercises/chapter\\ 1/réseau\\ à\\ été.txt").strip() == "mine"
    assert "kept (changed by the student)" in run.stdout
    hosts = json.loads(course.cli("status", "--json").stdout)["hosts"]
    assert "changed" in (hosts[0]["detail"] or "")


def test_ssh_opens_an_admin_session_on_that_host(course):
    if not shutil.which("ssh"):
        pytest.skip("no ssh client: apt-get install openssh-client (scripts/test.sh does)")
    run = course.cli("ssh", "2", input="hostname; id -un\n", subprocess=True)
    assert run.exit_code == 0, run
    assert run.stdout.split()[-2:] == ["student-02", "root"]  # after the login banner


def test_an_image_that_does_not_exist_is_refused_before_anything_is_created(engine, tmp_path):
    name = unique_name("t-noimg")
    write_classroom_file(tmp_path, name, students=1, port_base=free_port_base(2),
                         extra="images:\n  - course-test/does-not-exist:9\n")
    run = Cli(tmp_path / "home", cwd=tmp_path)("up")
    assert run.exit_code == 2, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "classroom: error: images.0: course-test/does-not-exist:9 is not on this engine and cannot be pulled")
    assert not engine.containers.list(all=True, filters={"label": f"classroom.name={name}"})
