"""What a student can reach (issue 8): the course's folders stay inside the course, local hosts
get only what a nested engine needs and are limited, and `up` says when students are not
isolated from the trainer's machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import (
    Cli,
    assert_nothing_created,
    assert_one_line,
    docker_client,
    free_port_base,
    remove_classroom_resources,
    ssh_connect,
    ssh_run,
    unique_name,
    write_classroom_file,
)
from provision.backends.local import NESTED_ENGINE_CAPS, host_container_args
from provision.config import LocalConfig, LocalLimits

NOT_ISOLATED = ("local hosts do not isolate students from this machine: use local.runtime: sysbox-runc "
                "or the aws backend for strangers.")


# --- the course's folders stay inside the course -------------------------------------------------
def _refused(cli, name: str, message: str, env: dict | None = None) -> None:
    run = cli("-f", "course/classroom.yaml", "up", env=env)
    assert_one_line(run, message, regex=False)
    assert run.stdout == "", run
    assert_nothing_created(cli, name, docker_client())


def _course(tmp_path: Path, name: str, body: str) -> Path:
    course = tmp_path / "course"
    course.mkdir(exist_ok=True)
    (course / "classroom.yaml").write_text(f"name: {name}\nstudents: 1\nswarm:\n  nodes: 0\n"
                                           f"local:\n  ssh_port_base: {free_port_base(2)}\n"
                                           "  public_host: 127.0.0.1\n" + body)
    return course


def test_exercises_that_hold_the_state_folder_are_refused(tmp_path):
    # `exercises: .` with the state folder under the course folder gave every student the admin
    # key and the passwords. Refused even before the state folder exists.
    name = unique_name("t-iso")
    course = _course(tmp_path, name, "exercises: .\n")
    cli = Cli(course / "state", cwd=tmp_path)
    _refused(cli, name, f"course/classroom.yaml: exercises: {course} holds the classroom state "
                                  f"folder {course}/state (keys, passwords): name a folder with the course's files only")


def test_reset_checks_the_exercises_folder_as_up_does(tmp_path):
    # `reset` copies the exercises again: a classroom file changed after `up` is refused too.
    name = unique_name("t-iso")
    course = _course(tmp_path, name, "exercises: .\n")
    cli = Cli(course / "state", cwd=tmp_path)
    run = cli("-f", "course/classroom.yaml", "reset", "student-01")
    assert_one_line(run, f"course/classroom.yaml: exercises: {course} holds the classroom state folder "
                         f"{course}/state (keys, passwords): name a folder with the course's files only", regex=False)


def test_exercises_inside_the_state_folder_are_refused(tmp_path):
    name = unique_name("t-iso")
    course = _course(tmp_path, name, "exercises: ./state/other\n")
    cli = Cli(course / "state", cwd=tmp_path)
    _refused(cli, name, f"course/classroom.yaml: exercises: {course}/state/other is inside the classroom "
                                  f"state folder {course}/state: name a folder of the course")


def test_exercises_that_hold_the_cache_folder_are_refused(tmp_path):
    name = unique_name("t-iso")
    course = _course(tmp_path, name, "exercises: ./cache\n")
    (course / "cache").mkdir()
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    _refused(cli, name, f"course/classroom.yaml: exercises: {course}/cache holds the classroom cache "
                                  f"folder {course}/cache/classroom (saved images): name a folder with the "
                                  "course's files only", env={"XDG_CACHE_HOME": str(course / "cache")})


@pytest.mark.parametrize("path", ["../../../../../../../../../../etc/ssh", "/etc/ssh", "./escape/ssh"])
def test_exercises_outside_the_course_folder_are_refused(tmp_path, path):
    # The tool runs as root: `../../../etc/ssh` copied the machine's host keys to every student.
    # ./escape is a symlink inside the course folder that points outside it.
    name = unique_name("t-iso")
    course = _course(tmp_path, name, f"exercises: {path}\n")
    (course / "escape").symlink_to("/etc")
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    _refused(cli, name, f"course/classroom.yaml: exercises: /etc/ssh is outside the course folder "
                                  f"{course} (the classroom file's folder): keep what students get beside the "
                                  "classroom file")


def test_an_image_build_folder_outside_the_course_or_holding_the_state_is_refused(tmp_path):
    # A build folder's files end up in an image that every student gets.
    name = unique_name("t-iso")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "Dockerfile").write_text("FROM scratch\n")
    course = _course(tmp_path, name, "images:\n  - name: course/web:1\n    build: ../elsewhere\n")
    cli = Cli(course / "state", cwd=tmp_path)
    _refused(cli, name, f"course/classroom.yaml: images.0.build: {tmp_path}/elsewhere is outside the "
                                  f"course folder {course} (the classroom file's folder): keep what students get "
                                  "beside the classroom file")
    (course / "Dockerfile").write_text("FROM scratch\n")
    _course(tmp_path, name, "images:\n  - name: course/web:1\n    build: .\n")
    _refused(cli, name, f"course/classroom.yaml: images.0.build: {course} holds the classroom state "
                                  f"folder {course}/state (keys, passwords): name a folder with the course's files only")


# --- local.limits and local.runtime in the classroom file -----------------------------------------
@pytest.mark.parametrize("body, message", [
    ("local:\n  limits:\n    memory: lots\n", "local.limits.memory: 'lots' is not a size like 512m or 2g"),
    ("local:\n  limits:\n    memory: 100m\n", "local.limits.memory: must be at least 256m (got '100m')"),
    ("local:\n  limits:\n    tmp: 1x\n", "local.limits.tmp: '1x' is not a size like 512m or 2g"),
    ("local:\n  limits:\n    run: 1m\n", "local.limits.run: must be at least 16m (got '1m')"),
    ("local:\n  limits:\n    pids: 10\n", "local.limits.pids: must be at least 64 (got 10)"),
    ("local:\n  limits:\n    cpus: 0\n", "local.limits.cpus: must be greater than 0"),
    ("local:\n  limits:\n    disk: 10g\n", "local.limits.disk: unknown setting"),
    ("local:\n  runtime: runc\n", "local.runtime: 'runc' is the engine's default runtime and isolates nothing: "
                                  "leave local.runtime out, or name one like sysbox-runc"),
    ("local:\n  runtime: 'sysbox runc'\n", "local.runtime: 'sysbox runc' is not a runtime name like sysbox-runc"),
])
def test_bad_limits_and_runtimes_are_one_line_naming_the_setting(tmp_path, body, message):
    name = unique_name("t-iso")
    (tmp_path / "bad.yaml").write_text(f"name: {name}\n{body}")
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    run = cli("-f", "bad.yaml", "up")
    assert_one_line(run, f"bad.yaml: {message}", regex=False)
    assert_nothing_created(cli, name, docker_client())


def test_a_runtime_the_engine_does_not_know_is_refused_before_anything_is_made(engine, tmp_path):
    name = unique_name("t-iso")
    path = write_classroom_file(tmp_path, name, students=1)
    path.write_text(path.read_text().replace("local:\n", "local:\n  runtime: sysbox-runc\n"))
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    run = cli("up")
    known = ", ".join(sorted(engine.info()["Runtimes"]))
    assert_one_line(run, f"local.runtime: the Docker engine has no runtime 'sysbox-runc' (it has {known}): install "
                         "it and register it in the engine's daemon.json, or remove local.runtime", regex=False)
    assert_nothing_created(cli, name, engine)


def test_up_help_shows_the_default_limits():
    run = Cli(Path("/nonexistent"))("up", "--help")
    text = " ".join(run.stdout.split())
    defaults = LocalLimits()
    assert (f"defaults: memory {defaults.memory}, pids {defaults.pids}, cpus {defaults.cpus:g}, "
            f"tmp {defaults.tmp} (/tmp), run {defaults.run} (/run); null lifts a limit") in text
    assert "sysbox-runc" in text


# --- the container arguments of a host, for both modes -------------------------------------------
def test_a_host_without_runtime_gets_only_what_a_nested_engine_needs():
    args = host_container_args(LocalConfig(), engine_cpus=8)
    assert args["cap_drop"] == ["ALL"]
    assert args["cap_add"] == list(NESTED_ENGINE_CAPS)
    for dangerous in ("ALL", "SYS_MODULE", "SYS_RAWIO", "SYS_BOOT", "SYS_TIME", "SYSLOG", "SYS_RESOURCE",
                      "DAC_READ_SEARCH"):
        assert dangerous not in args["cap_add"]
    seccomp, apparmor = args["security_opt"]
    profile = json.loads(seccomp.removeprefix("seccomp="))
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    (denied,) = profile["syscalls"]
    assert denied["action"] == "SCMP_ACT_ERRNO" and {"init_module", "kexec_load", "open_by_handle_at"} <= set(
        denied["names"])
    assert apparmor == "apparmor=unconfined" and args["cgroupns"] == "private" and "runtime" not in args
    # the defaults of local.limits
    assert (args["mem_limit"], args["pids_limit"], args["nano_cpus"]) == ("2g", 2048, 2_000_000_000)
    assert args["tmpfs"] == {"/run": "rw,exec,mode=755,size=256m", "/tmp": "rw,exec,mode=1777,size=1g"}


def test_an_engine_without_seccomp_gets_no_profile_and_cpus_are_capped_at_the_engines():
    args = host_container_args(LocalConfig(), engine_cpus=1, seccomp=False)
    assert args["security_opt"] == ["seccomp=unconfined", "apparmor=unconfined"]
    assert args["nano_cpus"] == 1_000_000_000


def test_a_host_under_a_runtime_gets_no_added_privilege():
    local = LocalConfig(runtime="sysbox-runc", limits={"memory": "4g", "pids": 4096, "cpus": 1.5,
                                                       "tmp": None, "run": "64m"})
    args = host_container_args(local, engine_cpus=8)
    assert args["runtime"] == "sysbox-runc"
    for privileged in ("cap_add", "cap_drop", "security_opt", "cgroupns", "privileged", "devices"):
        assert privileged not in args
    assert (args["mem_limit"], args["pids_limit"], args["nano_cpus"]) == ("4g", 4096, 1_500_000_000)
    assert args["tmpfs"] == {"/run": "rw,exec,mode=755,size=64m", "/tmp": "rw,exec,mode=1777"}


def test_null_lifts_a_limit():
    args = host_container_args(LocalConfig(limits={"memory": None, "pids": None, "cpus": None}))
    assert not {"mem_limit", "pids_limit", "nano_cpus"} & set(args)


def test_only_a_vm_per_student_or_an_isolating_runtime_counts_as_isolation():
    from provision.backends.aws.backend import AwsBackend
    from provision.backends.local import LocalBackend
    from provision.config import ClassroomConfig
    from provision.state import ClassroomState

    assert AwsBackend.isolates_students is True
    state = ClassroomState("x", Path("/nonexistent"))
    assert LocalBackend(ClassroomConfig(), state).isolates_students is False
    assert LocalBackend(ClassroomConfig(local={"runtime": "sysbox-runc"}), state).isolates_students is True


# --- a real classroom under limits: contained, and the course still runs --------------------------
# Bits of /proc/PID/status CapBnd (linux/capability.h).
CAP_BITS = {"SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_PTRACE": 19, "SYS_BOOT": 22, "SYS_RESOURCE": 24,
            "SYS_TIME": 25, "SYSLOG": 34, "DAC_READ_SEARCH": 2, "SYS_ADMIN": 21, "NET_ADMIN": 12}

COURSE_AS_A_STUDENT = r"""
set -e
cd "$(mktemp -d "$HOME/course.XXXX")"
docker run --rm {image} echo ran
docker run -d --name web -p 8080:80 {image} httpd -f -p 80 -h /etc >/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do curl -sf http://127.0.0.1:8080/hostname >/dev/null && break; sleep 0.5; done
curl -sf http://127.0.0.1:8080/hostname >/dev/null && echo published
docker volume create data >/dev/null
docker run --rm -v data:/data {image} sh -c 'echo kept > /data/f'
docker run --rm -v data:/data {image} cat /data/f
docker network create lab >/dev/null
docker run -d --name peer --network lab {image} sleep 60 >/dev/null
docker run --rm --network lab {image} ping -c1 -W5 peer >/dev/null && echo networked
printf 'FROM {image}\nRUN echo built > /built\n' > Dockerfile
docker build -q -t mine:1 . >/dev/null
docker run --rm mine:1 cat /built
printf 'version: "2"\nservices:\n  app:\n    image: {image}\n    command: sleep 60\n' > docker-compose.yml
docker-compose up -d >/dev/null 2>&1
docker-compose ps -q app | grep -q . && echo composed
docker-compose down >/dev/null 2>&1
docker run -d --name db --user 999 {image} sleep 60 >/dev/null
docker exec db ps >/dev/null && echo exec-as-another-user
docker rm -f web peer db >/dev/null
"""


def test_a_limited_host_is_contained_and_the_course_still_runs(engine, tiny_image, tmp_path):
    name = unique_name("t-iso")
    course = tmp_path / "course"
    (course / "exercises" / "01-intro").mkdir(parents=True)
    (course / "exercises" / "01-intro" / "README").write_text("hello\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "token").write_text("TOPSECRET-ISOLATE\n")
    # Symlinks inside the exercises folder that point outside it are never followed.
    (course / "exercises" / "link-to-file").symlink_to(secret / "token")
    (course / "exercises" / "link-to-folder").symlink_to(secret)
    port_base = free_port_base(2)
    write_classroom_file(course, name, students=1, port_base=port_base,
                         extra=f"images:\n  - {tiny_image}\nexercises: ./exercises\n")
    path = course / "classroom.yaml"
    path.write_text(path.read_text().replace(
        "local:\n", "local:\n  limits:\n    memory: 1g\n    pids: 1024\n    cpus: 1\n    tmp: 64m\n    run: 128m\n"))
    cli = Cli(course / "home", cwd=course)
    try:
        run = cli("up")
        assert run.exit_code == 0, run
        assert NOT_ISOLATED in " ".join(run.stdout.split()), run

        (container,) = engine.containers.list(filters={"label": f"classroom.name={name}"})
        host = container.attrs["HostConfig"]
        assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (1 << 30, 1024, 1_000_000_000)
        assert "size=64m" in host["Tmpfs"]["/tmp"] and "size=128m" in host["Tmpfs"]["/run"]
        assert host["CapDrop"] == ["ALL"] and set(host["CapAdd"]) == set(NESTED_ENGINE_CAPS)
        assert not any(option == "seccomp=unconfined" for option in host["SecurityOpt"])

        def inside(command: str) -> str:
            code, output = container.exec_run(["sh", "-c", command])
            assert code == 0, output.decode(errors="replace")
            return output.decode(errors="replace")

        assert inside("df -k /tmp | tail -1").split()[1] == str(64 * 1024)
        status = dict(line.split(":\t", 1) for line in inside("cat /proc/1/status").splitlines() if ":\t" in line)
        bounding = int(status["CapBnd"], 16)
        for cap in ("SYS_MODULE", "SYS_RAWIO", "SYS_BOOT", "SYS_TIME", "SYSLOG", "SYS_RESOURCE",
                    "DAC_READ_SEARCH"):
            assert not bounding & (1 << CAP_BITS[cap]), f"{cap} is in the host's bounding set"
        assert bounding & (1 << CAP_BITS["SYS_ADMIN"]) and bounding & (1 << CAP_BITS["NET_ADMIN"])
        if any("name=seccomp" in option for option in engine.info().get("SecurityOptions") or []):
            assert status["Seccomp"].strip() == "2", "the host runs without a seccomp filter"
        assert "Chain DOCKER" in inside("iptables -t nat -L -n")  # the nested engine's own rules

        (entry,) = json.loads(cli("roster", "--format", "json").stdout)
        student = ssh_connect(entry["port"], entry["user"], entry["password"])
        try:
            code, out, err = ssh_run(student, COURSE_AS_A_STUDENT.format(image=tiny_image), timeout=300)
            assert code == 0, out + err
            assert out.split() == ["ran", "published", "kept", "networked", "built", "composed",
                                  "exec-as-another-user"], out + err
            # What a nested engine cannot hand out, a student cannot take.
            for flags in ("--cap-add SYS_MODULE", "--cap-add ALL --pid=host", "--privileged"):
                code, out, err = ssh_run(student, f"docker run --rm {flags} {tiny_image} true")
                assert code != 0 and "operation not permitted" in err, (flags, out, err)
            code, out, err = ssh_run(student, "ls -A ~/exercises; grep -rs TOPSECRET ~/exercises; true")
            assert out.split() == ["01-intro"], out + err
        finally:
            student.close()
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)
