"""Host keys are made by the tool, pinned on every connection, and survive `reset --hard`.

Without pinning, anyone in the middle of an SSH connection receives every password the tool
sends. These tests drive a real classroom on the engine and a real OpenSSH client.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import paramiko
import pytest

from conftest import REPO, Cli, remove_classroom_resources, unique_name, write_classroom_file

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostkeys")
    name = unique_name("t-hk")
    write_classroom_file(folder, name, students=2)
    cli = Cli(folder / "home", cwd=folder)
    try:
        first = cli("up")
        assert first.exit_code == 0, first
        yield cli, name, folder
    finally:
        cli("down", "--yes")
        remove_classroom_resources(engine, name)


def roster(cli) -> dict[str, dict]:
    run = cli("roster", "--format", "json")
    assert run.exit_code == 0, run
    return {entry["student"]: entry for entry in json.loads(run.stdout)}


def presented_key(port: int) -> paramiko.PKey:
    """The host key sshd on 127.0.0.1:port presents, as any client would see it."""
    transport = paramiko.Transport(("127.0.0.1", port))
    try:
        transport.start_client(timeout=15)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def state_key(cli, name: str, host: str) -> str:
    return " ".join((cli.home / name / "host_keys" / f"{host}.pub").read_text().split()[:2])


def test_every_host_presents_the_key_the_classroom_made(room):
    cli, name, _ = room
    state = cli.home / name
    assert stat.S_IMODE((state / "host_keys").stat().st_mode) == 0o700
    known = (state / "known_hosts").read_text().splitlines()
    assert stat.S_IMODE((state / "known_hosts").stat().st_mode) == 0o600
    assert sorted(line.split()[0] for line in known) == ["student-01", "student-02"]
    for student, entry in roster(cli).items():
        assert stat.S_IMODE((state / "host_keys" / student).stat().st_mode) == 0o600
        key = presented_key(entry["port"])
        assert f"{key.get_name()} {key.get_base64()}" == state_key(cli, name, student)
        # The student can check it: the roster and the sheet carry the fingerprint ssh shows.
        assert entry["host_key"] == key.fingerprint
        sheet = (state / "sheets" / f"{student}.md").read_text()
        assert key.fingerprint in sheet


def test_private_host_keys_never_show_in_docker_inspect(room, engine):
    cli, name, _ = room
    for container in engine.containers.list(filters={"label": f"classroom.name={name}"}):
        host = container.labels["classroom.host"]
        private = (cli.home / name / "host_keys" / host).read_text()
        body = "".join(private.splitlines()[1:-1])  # the key material, without the PEM armour
        inspected = json.dumps(engine.api.inspect_container(container.id))
        assert body[:40] not in inspected
        assert "PRIVATE KEY" not in inspected


def test_classroom_ssh_checks_the_classroom_known_hosts(room, tmp_path):
    cli, name, folder = room
    env = {**os.environ, "CLASSROOM_HOME": str(cli.home), "HOME": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "provision.cli", "ssh", "student-01", "--", "hostname"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "student-01"
    # Nothing of the classroom leaks into the trainer's own known_hosts.
    assert not (tmp_path / ".ssh" / "known_hosts").exists()


def test_reset_hard_keeps_the_host_key(room, engine):
    cli, name, _ = room
    label = {"label": [f"classroom.name={name}", "classroom.host=student-01"]}
    before_id = engine.containers.list(filters=label)[0].id
    before = presented_key(roster(cli)["student-01"]["port"])
    run = cli("reset", "student-01", "--hard")
    assert run.exit_code == 0, run
    assert engine.containers.list(filters=label)[0].id != before_id  # a new machine...
    entry = roster(cli)["student-01"]
    after = presented_key(entry["port"])
    assert after.get_base64() == before.get_base64()  # ...with the same identity
    # A student whose client pinned the key logs in again without any warning.
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{entry['port']}", before.get_name(), before)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=entry["port"], username="student-01", password=entry["password"],
                   look_for_keys=False, allow_agent=False, timeout=15)
    client.close()


def test_a_host_with_another_key_is_reported_and_not_used(room, engine, tmp_path):
    cli, name, folder = room
    container = engine.containers.list(filters={"label": [f"classroom.name={name}",
                                                          "classroom.host=student-02"]})[0]
    # Someone swaps the host's key (a machine in the middle would present its own the same way).
    code, out = container.exec_run(["sh", "-c", "rm -f /etc/ssh/ssh_host_ed25519_key* && "
                                    "ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && "
                                    "pkill -HUP -o -x sshd"])
    assert code == 0, out
    entry = roster(cli)["student-02"]
    for _ in range(50):  # sshd re-executes itself on SIGHUP
        try:
            if presented_key(entry["port"]).get_base64() != state_key(cli, name, "student-02").split()[1]:
                break
        except (paramiko.SSHException, OSError):
            pass
    else:
        pytest.fail("sshd did not take the new key")

    status = cli("status", "--json")
    assert status.exit_code == 3, status
    rows = {h["name"]: h for h in json.loads(status.stdout)["hosts"]}
    assert rows["student-01"]["state"] == "ready"
    assert rows["student-02"]["state"] == "failed"
    assert "host key" in rows["student-02"]["detail"]

    up = cli("up")
    assert up.exit_code == 3, up
    row = next(line for line in up.stdout.splitlines() if line.lstrip("│ ").startswith("student-02"))
    assert "host key" in row
    assert "student-02" in up.stderr or "student-02" in up.stdout
    # Another `up` cannot repair it: the closing advice names the command that does.
    assert "`classroom reset --hard student-02`" in up.stderr, up
    assert "Re-run `classroom up`" not in up.stderr, up

    # The real OpenSSH client, through `classroom ssh`, refuses it too.
    env = {**os.environ, "CLASSROOM_HOME": str(cli.home), "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "provision.cli", "ssh", "student-02", "--", "true"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr or "verification failed" in done.stderr

    # The way out the message gives: a new machine, with the classroom's key again.
    reset = cli("reset", "student-02", "--hard")
    assert reset.exit_code == 0, reset
    assert presented_key(entry["port"]).get_base64() == state_key(cli, name, "student-02").split()[1]
    assert cli("status").exit_code == 0
