"""Issue 12 on a real local classroom, as students over SSH: each student reaches what they
publish from the trainer's machine, both Compose spellings work, sudo with their own password
(and not once `students_sudo: false`), and `reset --keep-home`.

One classroom of two students for the module; every test leaves it as it found it, so each one
passes alone. Only 127.0.0.1 and the classroom's own containers are ever contacted.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import Cli, port_free, remove_classroom_resources, ssh_connect, ssh_run, unique_name, \
    write_classroom_file
from provision.ports import PUBLISHED_OFFSET

STUDENTS = 2
COURSE_PORTS = "ports: [8080]\n"  # the port both students publish


def free_base_with_public_ports() -> int:
    """A base whose SSH ports and students' public ports (base + 1001 …) are all free now."""
    import random

    for _ in range(200):
        base = random.randrange(45000, 52000, 10)
        wanted = [base + i for i in range(1, STUDENTS + 1)]
        wanted += [base + PUBLISHED_OFFSET + i for i in range(1, STUDENTS + 1)]
        if all(port_free(port) for port in wanted):
            return base
    raise RuntimeError("no free ports for the test classroom")


class Room:
    def __init__(self, cli: Cli, path, name: str):
        self.cli, self.path, self.name = cli, path, name

    def roster(self) -> dict[str, dict]:
        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        return {row["student"]: row for row in json.loads(run.stdout)}

    def session(self, student: str):
        row = self.roster()[student]
        return ssh_connect(row["port"], row["user"], row["password"])

    def as_student(self, student: str, command: str) -> tuple[int, str, str]:
        session = self.session(student)
        try:
            return ssh_run(session, command)
        finally:
            session.close()

    def sudo(self, student: str, password: str, command: str = "id -u") -> tuple[int, str, str]:
        """`sudo -S` as the student, the password written to the session's stdin, never argv."""
        session = self.session(student)
        try:
            stdin, stdout, stderr = session.exec_command(f"sudo -S -p '' {command}", timeout=60)
            stdin.write(password + "\n")
            stdin.flush()
            stdin.channel.shutdown_write()
            out, err = stdout.read().decode(), stderr.read().decode()
            return stdout.channel.recv_exit_status(), out, err
        finally:
            session.close()

    def set_setting(self, text: str) -> None:
        """Rewrite the classroom file's tail (after the fixed part) and converge with `up`."""
        head = self.path.read_text().split("# --- settings\n")[0]
        self.path.write_text(head + "# --- settings\n" + text)
        run = self.cli("up")
        assert run.exit_code == 0, run


@pytest.fixture(scope="module")
def room(engine, tiny_image, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reach")
    (folder / "exercises").mkdir()
    (folder / "exercises" / "hello.txt").write_text("hello\n")
    name = unique_name("t-reach")
    path = write_classroom_file(folder, name, students=STUDENTS, port_base=free_base_with_public_ports(),
                                extra=f"images:\n  - {tiny_image}\nexercises: ./exercises\n{COURSE_PORTS}"
                                      "# --- settings\n")
    cli = Cli(folder / "home", cwd=folder)
    try:
        run = cli("up")
        assert run.exit_code == 0, run
        yield Room(cli, path, name)
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


def fetch(url: str, wait: float = 60) -> str:
    """The page at `url` (127.0.0.1 only), asked again while the student's server starts."""
    assert url.startswith("http://127.0.0.1:"), url
    deadline = time.monotonic() + wait
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (http on loopback)
                return answer.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


SERVE = ("docker run -d --name web -p 8080:80 {image} sh -c "
         "'mkdir -p /www && echo \"page for {who}\" > /www/index.html && exec httpd -f -p 80 -h /www'")


def test_each_student_opens_their_own_page_on_their_own_url(room, tiny_image):
    roster = room.roster()
    urls = {}
    for student in roster:
        entry = roster[student]
        assert [p["port"] for p in entry["ports"]] == [8080]
        urls[student] = entry["ports"][0]["url"]
        code, out, err = room.as_student(student, SERVE.format(image=tiny_image, who=student))
        assert code == 0, err
    assert len(set(urls.values())) == STUDENTS  # both publish 8080, each has their own URL
    try:
        for student, url in urls.items():
            assert fetch(url).strip().endswith(f"for {student}")
        sheet = (room.cli.home / room.name / "sheets" / "student-01.md").read_text()
        assert f"`8080` → `{urls['student-01']}`" in sheet and urls["student-02"] not in sheet
    finally:
        for student in roster:
            room.as_student(student, "docker rm -f web")


def test_both_compose_spellings_work_for_a_student(room, tiny_image):
    compose = f"services:\n  web:\n    image: {tiny_image}\n    command: sleep 300\n"
    setup = f"mkdir -p ~/c && cd ~/c && printf '%s' '{compose}' > docker-compose.yml"
    for spelling in ("docker compose", "docker-compose"):
        code, out, err = room.as_student(
            "student-01", f"{setup} && {spelling} up -d && {spelling} ps -q web && "
                          "docker ps --filter label=com.docker.compose.project=c --format '{{.Names}}'")
        try:
            assert code == 0, f"{spelling}: {out}{err}"
            assert "web" in out.splitlines()[-1], f"{spelling}: {out}"
        finally:
            room.as_student("student-01", f"cd ~/c && {spelling} down")


def test_a_student_sudoes_with_their_own_password_and_only_when_allowed(room):
    roster = room.roster()
    password = roster["student-01"]["password"]
    code, out, err = room.sudo("student-01", password)
    assert (code, out.strip()) == (0, "0"), err
    code, out, _err = room.sudo("student-01", roster["student-02"]["password"])  # another student's
    assert code != 0 and out.strip() != "0"
    try:
        room.set_setting("students_sudo: false\n")
        code, out, err = room.sudo("student-01", password)
        assert code != 0 and "0" not in out.split(), err
        assert "not in the sudoers file" in err or "not allowed" in err, err
    finally:
        room.set_setting("")
    assert room.sudo("student-01", password)[:2] == (0, "0\n")


def test_reset_keep_home_keeps_the_home_folder_and_a_plain_reset_empties_it(room, tiny_image):
    prepare = (f"echo mine > ~/notes.txt && echo edited >> ~/exercises/hello.txt && "
               f"docker run -d --name busy {tiny_image} sleep 300 && docker rmi -f {tiny_image}")
    code, _out, err = room.as_student("student-02", prepare)
    assert code == 0, err
    run = room.cli("reset", "student-02", "--keep-home")
    assert run.exit_code == 0, run
    code, out, err = room.as_student(
        "student-02", "cat ~/notes.txt ~/exercises/hello.txt; docker ps -aq | wc -l; docker image ls -q | wc -l")
    assert code == 0, err
    assert out.split() == ["mine", "hello", "edited", "0", "1"]  # home kept; containers gone, images back
    run = room.cli("reset", "student-02")
    assert run.exit_code == 0, run
    code, out, _err = room.as_student("student-02", "ls ~/notes.txt; cat ~/exercises/hello.txt")
    assert "No such file" in _err and out.split() == ["hello"]


# Docker's own Compose plugin (what aws hosts install) cannot be downloaded here: this stand-in
# answers the CLI's metadata call and runs Compose v1, as the real plugin answers with v2.
VENDOR_PLUGIN = """#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion":"0.1.0","Vendor":"Docker Inc.","Version":"v2-stand-in"}'; exit 0
fi
shift
exec /usr/bin/docker-compose.moved "$@"
"""
PLUGIN = "/usr/libexec/docker/cli-plugins/docker-compose"


def test_a_host_with_only_the_compose_plugin_gets_docker_compose_too(room, engine, tiny_image):
    """The aws layout (plugin only, no docker-compose): `up` adds the docker-compose shim."""
    (host,) = engine.containers.list(filters={"label": [f"classroom.name={room.name}", "classroom.host=student-02"]})

    def root(command: str) -> str:
        code, out = host.exec_run(["sh", "-c", command])
        assert code == 0, out.decode()
        return out.decode()

    root(f"mv /usr/bin/docker-compose /usr/bin/docker-compose.moved && cat > {PLUGIN} <<'END'\n{VENDOR_PLUGIN}END\n"
         f"chmod 755 {PLUGIN}")
    try:
        assert room.as_student("student-02", "docker-compose version")[0] != 0  # the aws layout: none
        run = room.cli("up")
        assert run.exit_code == 0, run
        compose = f"services:\n  web:\n    image: {tiny_image}\n    command: sleep 300\n"
        code, out, err = room.as_student(
            "student-02", f"mkdir -p ~/d && cd ~/d && printf '%s' '{compose}' > docker-compose.yml && "
                          "docker-compose up -d && docker-compose ps -q web && docker-compose down")
        assert code == 0, out + err
        assert "v2-stand-in" in room.as_student("student-02", "docker compose version; docker info -f "
                                                "'{{range .ClientInfo.Plugins}}{{.Version}}{{end}}'")[1]
    finally:
        root(f"rm -f /usr/local/bin/docker-compose {PLUGIN} && mv /usr/bin/docker-compose.moved /usr/bin/docker-compose")
        run = room.cli("up")  # the plugin shim back, as `up` makes it
        assert run.exit_code == 0, run
    assert room.as_student("student-02", "docker compose version")[0] == 0
