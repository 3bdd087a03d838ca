"""`classroom rehearse`: the course's solutions, run as a student over SSH on a scratch host made
like a student's, then removed; a classroom of the same course is never touched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    REPO,
    Cli,
    assert_one_line,
    classroom_resources,
    free_port_base,
    remove_classroom_resources,
    unique_name,
)
from provision.config import ClassroomConfig
from provision.exercises import kept_from_students, pack_exercises
from provision.ports import course_ports
from provision.rehearse import scratch_config, scratch_name, scratch_port_base, tail_lines

EXAMPLE = REPO / "examples" / "docker-intro"
CHAPTERS = ["01-bases", "02-dockerfile", "03-partages", "04-compose", "05-swarm"]


# --- without the engine ----------------------------------------------------------------------------
def course_file(folder: Path, name: str = "t-rh-bad", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "exercises").mkdir(exist_ok=True)
    path = folder / "classroom.yaml"
    path.write_text(f"name: {name}\nstudents: 1\nswarm:\n  nodes: 0\nexercises: ./exercises\n{extra}")
    return path


def test_a_course_without_solutions_is_refused_in_one_line(cli, tmp_path):
    path = course_file(tmp_path / "course")
    run = cli("-f", path, "rehearse")
    assert_one_line(run, rf"{path}: solutions: not set: add `solutions: ./solutions`, a folder of "
                         r"NN-name/solution.sh, one per exercise", regex=False)
    assert not cli.home.exists() or not any(cli.home.iterdir())


def test_a_missing_or_empty_solutions_folder_is_refused_in_one_line(cli, tmp_path):
    path = course_file(tmp_path / "course", extra="solutions: ./solutions\n")
    run = cli("-f", path, "rehearse")
    assert_one_line(run, f"{path}: solutions: no such folder: {tmp_path / 'course' / 'solutions'}", regex=False)
    (tmp_path / "course" / "solutions" / "01-bases").mkdir(parents=True)
    (tmp_path / "course" / "solutions" / "01-bases" / "notes.txt").write_text("not a solution\n")
    run = cli("-f", path, "rehearse")
    assert_one_line(run, f"{path}: solutions: no NN-name/solution.sh in {tmp_path / 'course' / 'solutions'}",
                    regex=False)
    assert not cli.home.exists() or not any(cli.home.iterdir())


def test_solutions_outside_the_course_folder_are_refused(cli, tmp_path):
    (tmp_path / "elsewhere" / "01-x").mkdir(parents=True)
    (tmp_path / "elsewhere" / "01-x" / "solution.sh").write_text("true\n")
    path = course_file(tmp_path / "course", extra="solutions: ../elsewhere\n")
    run = cli("-f", path, "rehearse")
    assert_one_line(run, r".*: solutions: .*elsewhere is outside the course folder .*", regex=True)


def test_solutions_and_checks_in_the_exercises_folder_never_reach_students(tmp_path):
    exercises = tmp_path / "exercises"
    for relative in ("01-bases/README.md", "solutions/01-bases/solution.sh", "checks/01-bases/check.sh",
                     "answers/01-bases/solution.sh", "01-bases/checks/kept.txt"):
        (exercises / relative).parent.mkdir(parents=True, exist_ok=True)
        (exercises / relative).write_text("x\n")
    manifest = pack_exercises(exercises, kept_from_students(exercises, exercises / "answers")).manifest
    paths = [line.split("\t")[3] for line in manifest.splitlines()]
    assert paths == ["01-bases", "01-bases/checks", "01-bases/README.md", "01-bases/checks/kept.txt"]


def test_the_scratch_classroom_has_a_name_of_its_own():
    assert scratch_name("docker-intro") == "docker-intro-rehearsal"
    long = "a" * 40
    assert len(scratch_name(long)) == 40 and scratch_name(long).endswith("-rehearsal")


def test_the_scratch_host_takes_none_of_the_classrooms_ports():
    """30 students with their own 3-node clusters from base 41000 (ports.py): SSH 41001-41030, their
    nodes 42001-42030 and 43001-43030, 13 public ports each from 44001 to 44390."""
    config = ClassroomConfig.model_validate({"name": "t-rh-ports", "students": 30,
                                             "local": {"public_host": "127.0.0.1", "ssh_port_base": 41000}})
    assert config.swarm.own_nodes == 3 and len(course_ports(config.port_ranges)) == 13
    classroom = {*range(41001, 41031), *range(42001, 42031), *range(43001, 43031), *range(44001, 44391)}
    base = scratch_port_base(config)
    scratch = {base + 1, *range(base + 1001, base + 1014)}  # its one student, no nodes of its own
    assert base >= 41200 and not scratch & classroom
    assert scratch_config(config, base).local.ssh_port_base == base

    # 100 public ports per student, 42001-45000: the scratch host's own block must start past them.
    wide = ClassroomConfig.model_validate({"name": "t-rh-ports", "students": 30, "ports": ["8000-8099"],
                                           "swarm": {"nodes": 0, "mode": "shared"},
                                           "local": {"public_host": "127.0.0.1", "ssh_port_base": 41000}})
    assert scratch_port_base(wide) >= 45000


def test_a_failed_solutions_last_lines_are_cleaned():
    output = "".join(f"line {n}\n" for n in range(30)) + "\x1b]0;PWNED\x07\x1b[2Jlast words\n"
    lines = tail_lines(output, 7, 60)
    assert lines[-1] == "last words" and lines[0] == "line 16" and len(lines) == 15
    assert tail_lines("quiet\n", 124, 60)[-1] == "(stopped after 60 s)"


# --- on the engine ---------------------------------------------------------------------------------
def copy_example(tmp_path: Path, name: str, port_base: int) -> Path:
    """The offline example course, under a test classroom's name and ports."""
    folder = tmp_path / "docker-intro"
    shutil.copytree(EXAMPLE, folder)
    path = folder / "classroom.offline.yaml"
    text = path.read_text()
    text = text.replace("name: docker-intro\n", f"name: {name}\n", 1)
    text = text.replace("ssh_port_base: 2200", f"ssh_port_base: {port_base}", 1)
    assert f"name: {name}\n" in text and f"ssh_port_base: {port_base}" in text
    path.write_text(text)
    return path


def test_the_offline_example_course_passes_every_chapter(engine, tmp_path):
    """The example course, with no registry: every chapter's solution passes as a student on a
    scratch host made from the course, which is gone afterwards."""
    name = unique_name("t-rh-ex")
    path = copy_example(tmp_path, name, free_port_base(2))
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    try:
        run = cli("-f", path, "rehearse", "--json", timeout=1800)
        report = json.loads(run.stdout) if run.stdout.startswith("{") else {"exercises": []}
        failed = {e["name"]: e["tail"] for e in report["exercises"] if not e["ok"]}
        assert run.exit_code == 0, (failed, run.stderr)  # what a trainer reads first: which chapter, and why
        assert [(e["name"], e["ok"]) for e in report["exercises"]] == [(c, True) for c in CHAPTERS], run
        assert report["ok"] is True and report["removed"] is True and report["scratch"] == f"{name}-rehearsal"
        assert classroom_resources(engine, f"{name}-rehearsal") == {"containers": [], "volumes": [], "networks": []}
        assert not (tmp_path / "home" / f"{name}-rehearsal").exists()
    finally:
        remove_classroom_resources(engine, f"{name}-rehearsal")


BROKEN_COURSE_SOLUTIONS = {
    # Run as the student, in ~/exercises/NN-name, with the course's exercises and nothing of the trainer's.
    "01-whoami": 'set -e\n[ "$(id -un)" = student-01 ]\n[ "$(pwd)" = "$HOME/exercises/01-whoami" ]\n'
                 '[ -f ~/exercises/hello.txt ] && [ ! -e ~/exercises/solutions ] && [ ! -e ~/exercises/checks ]\n'
                 'docker run --rm {image} echo container-ok\n',
    "02-broken": 'echo "first words"\nprintf "\\033]0;PWNED\\007\\033[2J"\necho "last words"\nexit 7\n',
    "03-after": 'echo "still run after a failure"\n',
}


def broken_course(folder: Path, name: str, tiny_image: str, port_base: int) -> Path:
    exercises = folder / "exercises"
    for relative in ("hello.txt", "01-whoami/README.md", "checks/01-whoami/check.sh"):
        (exercises / relative).parent.mkdir(parents=True, exist_ok=True)
        (exercises / relative).write_text("x\n")
    for exercise, script in BROKEN_COURSE_SOLUTIONS.items():
        (exercises / "solutions" / exercise).mkdir(parents=True)
        (exercises / "solutions" / exercise / "solution.sh").write_text(script.replace("{image}", tiny_image))
    path = folder / "classroom.yaml"
    path.write_text(f"name: {name}\nstudents: 1\nswarm:\n  nodes: 0\nimages:\n  - {tiny_image}\n"
                    f"exercises: ./exercises\nsolutions: ./exercises/solutions\n"
                    f"local:\n  public_host: 127.0.0.1\n  ssh_port_base: {port_base}\nttl: 2h\n")
    return path


def test_a_broken_solution_fails_with_its_last_lines_and_the_classroom_is_untouched(engine, tiny_image, tmp_path):
    # The classroom's own name ends like a scratch one: rehearsing `BASE` would need it, and must refuse.
    base = unique_name("t-rh")
    name = f"{base}-rehearsal"
    path = broken_course(tmp_path / "course", name, tiny_image, free_port_base(3))
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    try:
        assert (up := cli("-f", path, "up")).exit_code == 0, up
        before = {c.name: c.id for c in engine.containers.list(filters={"label": f"classroom.name={name}"})}
        roster_before = cli("-f", path, "roster", "--format", "json").stdout

        run = cli("-f", path, "rehearse")
        assert run.exit_code == 3, run
        assert "01-whoami" in run.stdout and "pass" in run.stdout and "fail" in run.stdout
        assert "02-broken failed (exit 7); its last lines:" in run.stderr
        assert "last words" in run.stderr and "\x1b" not in run.stderr + run.stdout and "\x07" not in run.stderr
        assert "2/3 exercise(s) pass." in run.stdout

        report = json.loads((as_json := cli("-f", path, "rehearse", "--json")).stdout)
        assert as_json.exit_code == 3, as_json
        assert [(e["name"], e["ok"], e["exit_code"]) for e in report["exercises"]] == [
            ("01-whoami", True, 0), ("02-broken", False, 7), ("03-after", True, 0)]
        assert report["exercises"][1]["tail"] == ["first words", "last words"]
        assert report["removed"] is True
        assert classroom_resources(engine, scratch_name(name))["containers"] == []

        # The classroom itself: the same containers, the same students, every host ready.
        after = {c.name: c.id for c in engine.containers.list(filters={"label": f"classroom.name={name}"})}
        assert after == before
        assert cli("-f", path, "roster", "--format", "json").stdout == roster_before
        assert (status := cli("-f", path, "status")).exit_code == 0, status

        # Rehearsing `base` would need the name of this running classroom: refused, nothing touched.
        refused = cli("-f", path, "--name", base, "rehearse")
        assert_one_line(refused, f"a classroom named {name!r} exists and is not a rehearsal of {base!r}: rehearse "
                                 f"needs that name; remove it (`classroom --name {name} down`) or rename this classroom",
                        regex=False)
        assert {c.name: c.id for c in engine.containers.list(filters={"label": f"classroom.name={name}"})} == before
    finally:
        cli("-f", path, "down", "--yes")
        remove_classroom_resources(engine, name)
        remove_classroom_resources(engine, scratch_name(name))


def test_ctrl_c_removes_the_scratch_host_and_a_killed_rehearsals_is_removed_next_time(engine, tiny_image, tmp_path):
    name = unique_name("t-rh-int")
    folder = tmp_path / "course"
    path = broken_course(folder, name, tiny_image, free_port_base(3))
    slow = folder / "exercises" / "solutions" / "02-broken" / "solution.sh"
    slow.write_text("touch ~/started\nsleep 300\n")
    scratch = scratch_name(name)
    env = {**os.environ, "CLASSROOM_HOME": str(tmp_path / "home"), "NO_COLOR": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def start_and_wait_for_the_slow_solution(not_on: str = "") -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen([sys.executable, "-m", "provision.cli", "-f", str(path), "rehearse"], env=env,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            hosts = engine.containers.list(filters={"label": f"classroom.name={scratch}"})
            if hosts and hosts[0].id != not_on and \
                    hosts[0].exec_run(["test", "-f", "/home/student-01/started"]).exit_code == 0:
                return process, hosts[0].id
            time.sleep(1)
        process.kill()
        pytest.fail(f"the slow solution never started: {process.communicate(timeout=30)}")

    processes = []
    try:
        # Killed outright: nothing can clean up, the scratch host stays...
        killed, first_host = start_and_wait_for_the_slow_solution()
        processes.append(killed)
        killed.kill()
        killed.wait(timeout=30)
        assert classroom_resources(engine, scratch)["containers"], "the killed rehearsal's host should be left"

        # ...and the next rehearsal removes it first, then makes its own; Ctrl-C removes that one.
        interrupted, _second_host = start_and_wait_for_the_slow_solution(not_on=first_host)
        processes.append(interrupted)
        interrupted.send_signal(signal.SIGINT)
        out, err = interrupted.communicate(timeout=120)
        assert interrupted.returncode == 130, (out, err)
        assert "classroom: interrupted" in err
        assert classroom_resources(engine, scratch) == {"containers": [], "volumes": [], "networks": []}
        assert not (tmp_path / "home" / scratch).exists()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        remove_classroom_resources(engine, scratch)


EXAMPLE_SCRIPTS = sorted([*EXAMPLE.glob("solutions/*/solution.sh"), *EXAMPLE.glob("images/*/docker-entrypoint.sh")])


@pytest.mark.parametrize("path", EXAMPLE_SCRIPTS, ids=lambda p: str(p.relative_to(EXAMPLE)))
def test_the_example_courses_scripts_pass_shellcheck(path):
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; scripts/test.sh does it)")
    done = subprocess.run(["shellcheck", "-S", "warning", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_example_courses_images_stay_small():
    """Every apt-get install of the course's images leaves recommends and the package cache out."""
    dockerfiles = [*EXAMPLE.glob("images/*/Dockerfile"), EXAMPLE / "exercises" / "04-compose" / "vote" / "Dockerfile"]
    assert len(dockerfiles) == 4
    for path in dockerfiles:
        text = path.read_text()
        installs = text.count("apt-get install")
        assert installs and text.count("--no-install-recommends") == installs, path
        assert "apt-get clean" in text and "rm -rf /var/lib/apt/lists/*" in text, path
