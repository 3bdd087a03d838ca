"""Shared fixtures: the real command line, the Docker engine, a tiny image, free SSH ports.

Rules every engine test follows (other people run classrooms on the same engine):
- a temporary CLASSROOM_HOME, classroom names that start with `t-` and are unique per run;
- SSH port bases at 30000 and above, never the default 2200;
- only what the test created is ever removed, found by its own labels.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_IMAGE = "classroom-test/tiny:1"  # busybox, FROM scratch: 2 MB, runs `echo`, `sh`, `sleep`
BUSYBOX = Path("/bin/busybox")


# --- the command line ------------------------------------------------------------------------------
@dataclass
class Run:
    """What one `classroom ...` invocation did."""

    exit_code: int
    stdout: str
    stderr: str
    args: tuple[str, ...] = ()

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:  # shown by pytest when an assertion on a Run fails
        return (f"classroom {' '.join(self.args)} -> exit {self.exit_code}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


class Cli:
    """Runs the real console entry, `provision.cli.main`, in this process (fast), or
    `python -m provision.cli` in a subprocess (`subprocess=True`: a real process, real stdin).

    Every run gets `CLASSROOM_HOME=home` unless `env` says otherwise; `env={"X": None}` unsets X.
    stdin is never a terminal: `input` is what the command reads.
    """

    def __init__(self, home: Path, cwd: Path | None = None):
        self.home = Path(home)
        self.cwd = cwd

    def environment(self, env: dict[str, str | None] | None = None) -> dict[str, str | None]:
        values: dict[str, str | None] = {"CLASSROOM_HOME": str(self.home), "COLUMNS": "200",
                                         "NO_COLOR": "1", "TERM": "dumb", "CLASSROOM_LOCK_WAIT": None}
        values.update(env or {})
        return values

    def __call__(self, *args: str, env: dict[str, str | None] | None = None, input: str = "",
                 cwd: Path | None = None, subprocess: bool = False, timeout: float = 600) -> Run:
        args = tuple(str(a) for a in args)
        cwd = cwd or self.cwd
        if subprocess:
            return self._subprocess(args, self.environment(env), input, cwd, timeout)
        return self._in_process(args, self.environment(env), input, cwd)

    def _in_process(self, args, env, input, cwd) -> Run:
        from provision import cli

        out, err = io.StringIO(), io.StringIO()
        saved_env = {key: os.environ.get(key) for key in env}
        saved_cwd = os.getcwd()
        saved_stdin = sys.stdin
        code: int | str | None = 0
        try:
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if cwd is not None:
                os.chdir(cwd)
            sys.stdin = io.StringIO(input)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    cli.main(list(args))
                except SystemExit as exc:
                    code = exc.code
        finally:
            sys.stdin = saved_stdin
            os.chdir(saved_cwd)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if code is None:
            code = 0
        elif not isinstance(code, int):  # sys.exit("message")
            err.write(f"{code}\n")
            code = 1
        return Run(code, strip_ansi(out.getvalue()), strip_ansi(err.getvalue()), args)

    def _subprocess(self, args, env, input, cwd, timeout) -> Run:
        full = dict(os.environ)
        for key, value in env.items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        # The checkout under test, whether or not it is installed in this interpreter.
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), full.get("PYTHONPATH")]))
        done = subprocess.run([sys.executable, "-m", "provision.cli", *args], input=input, text=True,
                              capture_output=True, cwd=cwd, env=full, timeout=timeout)
        return Run(done.returncode, done.stdout, done.stderr, args)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Rich's consoles are made at import: if that was on a terminal, they may still emit colours."""
    return _ANSI.sub("", text)


@pytest.fixture
def cli(tmp_path) -> Cli:
    """A runner with its own empty CLASSROOM_HOME (tmp_path/home), run from tmp_path."""
    return Cli(tmp_path / "home", cwd=tmp_path)


# --- names and ports -------------------------------------------------------------------------------
def unique_name(prefix: str = "t") -> str:
    """A classroom name no one else uses: `t-<prefix>-<8 hex>`, at most 40 characters."""
    prefix = prefix if prefix.startswith("t-") or prefix == "t" else f"t-{prefix}"
    return f"{prefix}-{uuid.uuid4().hex[:8]}"[:40]


def port_free(port: int, address: str = "127.0.0.1") -> bool:
    from provision.backends.local import port_free as probe

    return probe(address, port)


def free_port_base(count: int) -> int:
    """A base B such that B+1 … B+count are free now, and so are the students' public ports of
    the default course ports (B+1001 …, B+2001 … or B+3001 … with 1 to 3 nodes of their own,
    provision/ports.py). Below this machine's ephemeral port range: an outgoing connection (an
    SSH session, the engine's proxies) takes a local port from there at any moment, so a port
    found free there may be taken by the time `up` binds it."""
    import random

    from provision.ports import published_offset

    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    # The default `ports:` are 13 per student, and test classrooms have few students (a
    # larger `count` spans the Swarm nodes' SSH ports, which publish no course port).
    public = min(count, MAX_STUDENTS_IN_TESTS) * 13
    low, high = 12000, min(ephemeral, 32768) - published_offset(3) - public - 1
    for _ in range(200):
        base = random.randrange(low, high - count - 1, 10)
        if all(port_free(base + i) for i in range(1, count + 1)) and all(
                port_free(base + published_offset(nodes) + i) for nodes in (1, 2, 3) for i in range(1, public + 1)):
            return base
    raise RuntimeError(f"no {count} free ports in {low}-{high}")


def write_classroom_file(folder: Path, name: str, *, students: int = 3, swarm_nodes: int = 0,
                         port_base: int | None = None, extra: str = "", swarm_mode: str = "shared") -> Path:
    """A classroom file for a test: its own name, no Swarm by default (a shared cluster when
    `swarm_nodes`, unless `swarm_mode` says per-student), ports ≥ 30000."""
    port_base = port_base if port_base is not None else free_port_base(students + 2)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "classroom.yaml"
    path.write_text(
        f"name: {name}\n"
        f"students: {students}\n"
        f"swarm:\n  nodes: {swarm_nodes}\n  mode: {swarm_mode}\n"
        f"local:\n  ssh_port_base: {port_base}\n  public_host: 127.0.0.1\n"
        f"ttl: 2h\n" + extra
    )
    return path


# --- bad input: one line, exit 2, nothing created ---------------------------------------------------
PREFIX = "classroom: error: "


def assert_nothing_created(cli, name: str, client) -> None:
    home = cli.home
    assert not (home / name).exists(), f"a state folder was left: {sorted(p.name for p in (home / name).iterdir())}"
    assert not home.exists() or not any(home.iterdir()), f"state left in {home}: {list(home.iterdir())}"
    if client is not None:
        assert classroom_resources(client, name) == {"containers": [], "volumes": [], "networks": []}


def assert_one_line(run, expected: str, regex: bool) -> None:
    assert run.exit_code == 2, run
    assert len(run.error_lines) == 1, run
    line = run.error_lines[0]
    assert line.startswith(PREFIX), run
    if regex:
        assert re.fullmatch(expected, line[len(PREFIX):]), f"{line!r} does not match {expected!r}"
    else:
        assert line[len(PREFIX):] == expected
    assert "Traceback" not in run.stderr


# --- the engine ------------------------------------------------------------------------------------
def docker_client():
    """A Docker SDK client for the engine the tool uses (DOCKER_HOST or the local socket), or None."""
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="session")
def engine():
    """The Docker SDK client; the test is skipped, saying why, when no engine answers."""
    client = docker_client()
    if client is None:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        pytest.skip(f"no Docker engine answers at {where}: run scripts/setup-engine.sh "
                    "(or scripts/test.sh, which runs it) to install and start one")
    yield client
    client.close()


def classroom_resources(client, name: str) -> dict[str, list[str]]:
    """Everything on the engine labelled as classroom `name`."""
    label = {"label": f"classroom.name={name}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=label)],
        "volumes": [v.name for v in client.volumes.list(filters=label)],
        "networks": [n.name for n in client.networks.list(filters=label)],
    }


def remove_classroom_resources(client, name: str) -> None:
    """Last-resort cleanup of a test classroom, by its own label only."""
    import docker.errors

    label = {"label": f"classroom.name={name}"}
    for container in client.containers.list(all=True, filters=label):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)
    for volume in client.volumes.list(filters=label):
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)
    for network in client.networks.list(filters=label):
        with contextlib.suppress(docker.errors.APIError):
            network.remove()


@pytest.fixture(scope="session")
def tiny_image(engine) -> str:
    """A 2 MB busybox image (FROM scratch, built here: nothing can be pulled). Returns its tag."""
    import docker.errors

    try:
        engine.images.get(TINY_IMAGE)
        return TINY_IMAGE
    except docker.errors.ImageNotFound:
        pass
    if not BUSYBOX.is_file():
        pytest.skip(f"{BUSYBOX} is missing: apt-get install busybox-static (scripts/test.sh does)")
    dockerfile = (b"FROM scratch\nCOPY busybox /bin/busybox\n"
                  b'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["sh"]\n')
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for arcname, data, mode in (("Dockerfile", dockerfile, 0o644), ("busybox", BUSYBOX.read_bytes(), 0o755)):
            info = tarfile.TarInfo(arcname)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    engine.images.build(fileobj=context, custom_context=True, tag=TINY_IMAGE, rm=True, forcerm=True,
                        labels={"classroom.test": "tiny"})
    return TINY_IMAGE


def save_image(client, tag: str) -> bytes:
    """`docker save TAG` on the outer engine, as bytes."""
    return b"".join(client.api.get_image(tag))


def load_image_into(container, image_tar: bytes, name: str = "image.tar") -> str:
    """Put a `docker save` tar into a host container and `docker load` it into the host's own engine.

    /var/tmp, not /tmp: the host's /tmp is a tmpfs, which put_archive cannot see.
    """
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(image_tar), 0o600
        tar.addfile(info, io.BytesIO(image_tar))
    assert container.put_archive("/var/tmp", archive.getvalue())
    code, output = container.exec_run(["sh", "-c", f"docker load -i /var/tmp/{name} && rm -f /var/tmp/{name}"])
    text = output.decode(errors="replace")
    assert code == 0, f"docker load in {container.name} failed: {text}"
    return text


# --- SSH as a student ------------------------------------------------------------------------------
def ssh_connect(port: int, user: str, password: str, host: str = "127.0.0.1", timeout: float = 15):
    """A paramiko session logged in with a password only (no keys, no agent), as a student would."""
    import logging

    import paramiko

    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(host, port=port, username=user, password=password, look_for_keys=False,
                   allow_agent=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    return client


def ssh_run(client, command: str, timeout: float = 120) -> tuple[int, str, str]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


# --- one real classroom, shared by the engine tests ------------------------------------------------
@dataclass
class LiveClassroom:
    """A classroom made once per test session on the real engine (3 students, no Swarm)."""

    name: str
    home: Path
    folder: Path  # holds classroom.yaml; the runner's working directory
    file: Path
    port_base: int
    cli: Cli

    @property
    def state_dir(self) -> Path:
        return self.home / self.name

    def roster(self) -> list[dict]:
        import json

        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        return json.loads(run.stdout)

    def container_ids(self, client) -> dict[str, str]:
        """host name -> container ID, from the engine's labels."""
        containers = client.containers.list(all=True, filters={"label": f"classroom.name={self.name}"})
        return {c.labels["classroom.host"]: c.id for c in containers}


MAX_STUDENTS_IN_TESTS = 5  # the shared classroom grows from 3 to 5


@pytest.fixture(scope="session")
def classroom(engine, tmp_path_factory) -> LiveClassroom:
    """`classroom up` of 3 students, once; `down` (and a by-label sweep) when the session ends."""
    folder = tmp_path_factory.mktemp("classroom")
    name = unique_name("t-e2e")
    port_base = free_port_base(MAX_STUDENTS_IN_TESTS + 1)
    path = write_classroom_file(folder, name, students=3, port_base=port_base)
    runner = Cli(folder / "home", cwd=folder)
    room = LiveClassroom(name, runner.home, folder, path, port_base, runner)
    try:
        first = runner("up")
        if first.exit_code != 0:
            pytest.fail(f"`classroom up` of the shared test classroom failed:\n{first}")
        yield room
    finally:
        runner("down", "--yes")
        remove_classroom_resources(engine, name)


# --- a small real classroom whose students are driven over SSH (test_trust, test_probe_findings) ----
class Room:
    def __init__(self, name: str, cli: Cli, engine):
        self.name, self.cli, self.engine = name, cli, engine

    @property
    def state_dir(self):
        return self.cli.home / self.name

    def roster(self) -> dict[str, dict]:
        run = self.cli("roster", "--format", "json")
        assert run.exit_code == 0, run
        return {row["student"]: row for row in json.loads(run.stdout)}

    def hashes(self, swarm: bool = False) -> dict[str, str]:
        """The students' hashes for their own hosts, or (`swarm`) for the shared Swarm nodes."""
        return json.loads((self.state_dir / f"{'swarm_' if swarm else ''}password_hashes.json").read_text())

    def status(self) -> tuple[int, dict[str, dict]]:
        run = self.cli("status", "--json")
        return run.exit_code, {h["name"]: h for h in json.loads(run.stdout)["hosts"]}

    def container(self, host: str):
        (found,) = self.engine.containers.list(
            all=True, filters={"label": [f"classroom.name={self.name}", f"classroom.host={host}"]})
        return found

    def root(self, host: str, command: str, **environment: str) -> str:
        """Root on a host, as any student can be through Docker (`docker run -v /:/host ...`)."""
        code, out = self.container(host).exec_run(["sh", "-c", command], environment=environment or None)
        text = out.decode(errors="replace")
        assert code == 0, f"{host}: {command} -> {code}: {text}"
        return text

    def as_student(self, student: str, command: str, port: int | None = None,
                   swarm: bool = False) -> tuple[int, str, str]:
        """`command` over SSH as `student`, on their host or (`swarm`, with `port`) a Swarm node."""
        row = self.roster()[student]
        session = ssh_connect(port or row["port"], row["user"], row["swarm_password" if swarm else "password"])
        try:
            return ssh_run(session, command)
        finally:
            session.close()


def make_room(engine, tmp_path_factory, tiny_image, prefix: str, *, swarm_nodes: int = 0) -> tuple[Room, Cli]:
    folder = tmp_path_factory.mktemp(prefix)
    (folder / "exercises").mkdir()
    (folder / "exercises" / "hello.txt").write_text("hello\n")
    name = unique_name(f"t-{prefix}")
    write_classroom_file(folder, name, students=2, swarm_nodes=swarm_nodes,
                         port_base=free_port_base(2 + swarm_nodes + 2),
                         extra=f"images:\n  - {tiny_image}\nexercises: ./exercises\n")
    cli = Cli(folder / "home", cwd=folder)
    return Room(name, cli, engine), cli


@contextlib.contextmanager
def room_up(engine, tmp_path_factory, tiny_image, prefix: str, *, swarm_nodes: int = 0):
    """`make_room`, then `up`; `down` and a by-label sweep when the block ends."""
    made, cli = make_room(engine, tmp_path_factory, tiny_image, prefix, swarm_nodes=swarm_nodes)
    try:
        run = cli("up")
        assert run.exit_code == 0, run
        yield made
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, made.name)


# --- AWS stand-ins ---------------------------------------------------------------------------------
def fake_aws_credentials(monkeypatch, tmp_path, also_unset: tuple[str, ...] = ()) -> None:
    """Dummy credentials for moto, and nothing of the trainer's real AWS or Pulumi setup.

    moto also starts without its ~1,300 stock AMIs: it makes them (each with a volume and a
    snapshot) in every region a test touches, which was most of an AWS test's time. The hosts'
    image is the one a test publishes (`fakes.publish_image`), as Debian publishes its own.
    """
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", *also_unset):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture(scope="session", autouse=True)
def aws_service_models_built_once():
    """Each boto3 Session parses anew the JSON model of every service it uses (EC2's is megabytes),
    and each client builds a class with a method per operation (EC2 has about 700). The AWS tests
    make a session per command, as the tool does per run, and hundreds of clients: here each model
    is parsed and indexed once, and each service's client class built once, for the whole run. Both are
    read-only and the same for every session (one botocore), so no test sees a difference."""
    try:
        from botocore import client, loaders, session
    except ImportError:  # no `aws` extra
        yield
        return
    loaders_made: dict = {}
    models_made: dict = {}
    classes_made: dict = {}

    def shared_loader(search_path_string=None):
        if search_path_string not in loaders_made:
            loaders_made[search_path_string] = loaders.create_loader(search_path_string)
        return loaders_made[search_path_string]

    build_model = client.ClientCreator._load_service_model
    build_class = client.ClientCreator._create_client_class

    def shared_model(creator, service_name, api_version=None):
        key = (service_name, api_version)
        if key not in models_made:
            models_made[key] = build_model(creator, service_name, api_version)
        return models_made[key]

    def shared_class(creator, service_name, service_model):
        key = (service_name, service_model.api_version)
        if key not in classes_made:
            classes_made[key] = build_class(creator, service_name, service_model)
        return classes_made[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(session, "create_loader", shared_loader)
        patch.setattr(client.ClientCreator, "_load_service_model", shared_model)
        patch.setattr(client.ClientCreator, "_create_client_class", shared_class)
        yield


# --- password hashes -------------------------------------------------------------------------------
@pytest.fixture
def quick_password_hashes(monkeypatch):
    """SHA-512 crypt at 1000 rounds (its least) instead of 20 000, for tests that make classrooms
    whose hashes no one checks the strength of: a hash then takes under a millisecond rather than
    about 12. test_untrusted (unit) and test_trust (engine) check the production rounds."""
    from provision import passwords

    monkeypatch.setattr(passwords, "HASH_ROUNDS", 1000)


# --- tiers -----------------------------------------------------------------------------------------
ENGINE_FIXTURES = {"engine", "classroom", "tiny_image"}


def pytest_collection_modifyitems(config, items):
    """A test that uses the engine, directly or through another fixture, is an `engine` test:
    `scripts/test.sh --fast` (pytest -m "not engine") leaves it out."""
    for item in items:
        if uses_the_engine(item):
            item.add_marker(pytest.mark.engine)


def uses_the_engine(item) -> bool:
    """Whether the test asks for one of the engine fixtures defined HERE: a module's own fixture of
    the same name (test_aws_cli's `engine` is the Pulumi stand-in) does not make it an engine test."""
    info = getattr(item, "_fixtureinfo", None)
    for name in ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
        definitions = info.name2fixturedefs.get(name) if info is not None else None
        if not definitions or definitions[-1].func.__module__ == __name__:
            return True
    return False
