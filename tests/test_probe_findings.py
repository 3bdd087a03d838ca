"""Findings of the independent probe of issues 8 and 9 (a hostile student, an unlucky trainer).

Each test fails on the commit probed and states what the README / issue promises.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import room_up

pytestmark = pytest.mark.engine

# A PAM hook a student who is root on a shared node installs: every password typed there is kept.
GRAB = "#!/bin/sh\nread -r pw; echo \"$PAM_USER:$pw\" >> /var/tmp/grabbed\n"
# Send SIGHUP to the host's listening sshd (busybox has no pgrep): it re-reads its configuration.
RELOAD_SSHD = ("for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = sshd ] && "
               "grep -q listener $p/cmdline && kill -HUP ${p#/proc/}; done; true")


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory, tiny_image):
    with room_up(engine, tmp_path_factory, tiny_image, "probe") as made:
        yield made


@pytest.fixture(scope="module")
def swarm_room(engine, tmp_path_factory, tiny_image):
    with room_up(engine, tmp_path_factory, tiny_image, "prsw", swarm_nodes=1) as made:
        yield made


@pytest.fixture
def state_backup(room, tmp_path):
    """Each test damages the state folder; put it back afterwards."""
    saved = tmp_path / "state"
    shutil.copytree(room.state_dir, saved)
    yield room.state_dir
    shutil.rmtree(room.state_dir)
    shutil.copytree(saved, room.state_dir)


def test_a_password_typed_on_the_shared_swarm_node_does_not_open_its_students_own_host(swarm_room):
    """README, Security model: a student cannot reach "another student's host". But every student
    is root on swarm-1 and logs in there with the same password that opens their own host."""
    room = swarm_room
    room.root("swarm-1", "printf '%s' \"$GRAB\" > /usr/local/bin/grab && chmod 755 /usr/local/bin/grab && "
                         "sed -i '1i auth optional pam_exec.so quiet expose_authtok /usr/local/bin/grab' "
                         "/etc/pam.d/sshd", GRAB=GRAB)
    swarm_port = next(h["port"] for h in room.status()[1].values() if h["name"] == "swarm-1")
    # The Swarm chapter: student-02 logs in with the password their sheet gives for the Swarm nodes.
    code, _out, err = room.as_student("student-02", "docker node ls", port=swarm_port, swarm=True)
    assert code == 0, err
    grabbed = room.root("swarm-1", "cat /var/tmp/grabbed")
    stolen = next(line.split(":", 1)[1] for line in grabbed.splitlines() if line.startswith("student-02:"))
    own = room.roster()["student-02"]
    from conftest import ssh_connect
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do
        ssh_connect(own["port"], "student-02", stolen).close()


def test_up_repairs_admin_access_a_student_locked_with_sshd_config(room, tiny_image):
    """README (status): a student who breaks the admin key's access is reported "and `up` repairs
    it". A root student adds `PermitRootLogin no` (sshd's first value wins) and reloads sshd."""
    code, _out, err = room.as_student(
        "student-02", f"docker run --rm --pid=host -v /etc/ssh:/s {tiny_image} sh -c "
                      "'echo PermitRootLogin no > /s/sshd_config.d/00-x.conf && "
                      f"{RELOAD_SSHD}'")
    assert code == 0, err
    try:
        code, hosts = room.status()
        assert code == 3 and hosts["student-02"]["checks"]["admin"] is False
        run = room.cli("up")
        assert run.exit_code == 0, run
        code, hosts = room.status()
        assert code == 0 and hosts["student-02"]["checks"]["admin"] is True, hosts
    finally:
        room.root("student-02", f"rm -f /etc/ssh/sshd_config.d/00-x.conf; {RELOAD_SSHD}")


def test_a_deleted_passwords_file_is_named_by_roster_and_sheets(room, state_backup):
    """Issue 8: a damaged or missing state file: other commands name the bad file, exit 2. A
    deleted passwords.json gives an empty roster with exit 0 (`roster --format csv > roster.csv`
    silently writes nothing), and `sheets` says there are no students yet."""
    (state_backup / "passwords.json").unlink()
    for args in (("roster", "--format", "json"), ("roster",), ("sheets",), ("status",), ("reset", "1")):
        run = room.cli(*args)
        assert run.exit_code == 2 and "passwords.json" in run.stderr and "up --new-secrets" in run.stderr, run


def test_a_truncated_admin_key_is_named_and_not_waited_on(room, state_backup):
    """A deleted admin_key is refused with the way out; an emptied one (same loss) is not noticed:
    `status` says "SSH does not answer", `reset` waits 90 s, `up` exits 3 "re-run up" forever."""
    (state_backup / "admin_key").write_text("")
    for args in (("status",), ("up",), ("reset", "1")):
        run = room.cli(*args)
        assert run.exit_code == 2 and "admin_key" in run.stderr, run


def test_a_truncated_host_key_is_refused_before_reset_hard_replaces_the_host(room, state_backup):
    """An emptied host_keys/student-01: `up` says all ready; `reset --hard` then removes the
    student's working machine and leaves one whose sshd never starts (exit 3)."""
    (state_backup / "host_keys" / "student-01").write_text("")
    before = room.container("student-01").id
    run = room.cli("up")
    assert run.exit_code == 2 and "student-01" in run.stderr, run
    run = room.cli("reset", "1", "--hard")
    assert run.exit_code == 2, run
    assert room.container("student-01").id == before  # nothing was replaced


def test_a_deleted_classroom_record_is_named_and_up_rebuilds_it_from_the_hosts(room, state_backup):
    """classroom.json deleted while the hosts run: the hosts are still the classroom's (labels),
    `reset` names the lost record and the way out, and `up` rebuilds it from the hosts, saying
    that the expiry restarted rather than moving it silently."""
    import json

    (state_backup / "classroom.json").unlink()
    before = room.container("student-01").id
    run = room.cli("reset", "1")
    assert run.exit_code == 2 and "classroom.json is missing" in run.stderr and "`classroom up` rebuilds it" \
        in run.stderr, run
    run = room.cli("up")
    assert run.exit_code == 0, run
    assert "rebuilt from its 2 host(s)" in run.stderr and "restarted" in run.stderr, run
    record = json.loads((state_backup / "classroom.json").read_text())
    assert record["students"] == 2 and "expires_at" in record
    assert room.container("student-01").id == before  # nothing was replaced
