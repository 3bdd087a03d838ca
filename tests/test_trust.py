"""Issue 8, hostile students: no password reaches a machine other students control, no fast hash
anywhere, `up` repairs what a student broke, and what a host prints stays untrusted.

Through the real command line, on the real engine, with students acting over SSH. Each test
undoes what it breaks (with `up`, as a trainer would, or through the engine), so any of them
passes alone.
"""

from __future__ import annotations

import json
import shlex
import stat

import paramiko
import pytest
from conftest import room_up, ssh_connect

pytestmark = pytest.mark.engine

# What a hostile ~/.bashrc prints: retitle the window, clear the screen, colour the table.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J[red]PWNED[/red]\x9b31m"
HASH_PREFIX = "$6$rounds=20000$"


@pytest.fixture(scope="module")
def room(engine, tmp_path_factory, tiny_image):
    """Two students, the tiny image preloaded, one exercise file; no Swarm."""
    with room_up(engine, tmp_path_factory, tiny_image, "trust") as made:
        yield made


@pytest.fixture(scope="module")
def swarm_room(engine, tmp_path_factory, tiny_image):
    """Two students and one shared Swarm node."""
    with room_up(engine, tmp_path_factory, tiny_image, "trsw", swarm_nodes=1) as made:
        yield made


def assert_no_terminal_control(run) -> None:
    for stream, text in (("stdout", run.stdout), ("stderr", run.stderr)):
        for byte in ("\x1b", "\x07", "\x9b"):
            assert byte not in text, f"{byte!r} in {stream} of {run}"


# --- 1. no fast hash of passwords, only salted crypt hashes on hosts ----------------------------------
def test_hosts_hold_only_the_trainers_salted_hash_and_old_digests_go(room):
    hashes = room.hashes()
    assert stat.S_IMODE((room.state_dir / "password_hashes.json").stat().st_mode) == 0o600
    passwords = {student: row["password"] for student, row in room.roster().items()}
    assert set(hashes) == set(passwords)
    for student, hashed in hashes.items():
        assert hashed.startswith(HASH_PREFIX), hashed
        assert passwords[student] not in hashed
        shadow = room.root(student, f"getent shadow {student} | cut -d: -f2").strip()
        assert shadow == hashed  # exactly the trainer's string: `up` compares it as is
        found = room.root(student, f"grep -rlF -- {shlex.quote(passwords[student])} /etc /var/lib/classroom "
                                   "/root /home /var/tmp || true")
        assert found.strip() == "", f"{student}'s password found on their host: {found}"
    # A host made by the previous version kept unsalted sha256 digests for every student.
    room.root("student-01", "mkdir -p /etc/classroom && echo 'student-01 0123abcd' > /etc/classroom/accounts")
    run = room.cli("up")
    assert run.exit_code == 0, run
    assert room.root("student-01", "ls /etc/classroom").split() == []
    assert room.hashes() == hashes  # made once: a re-run keeps the same salted hash


# --- 3. a student who breaks the admin's access, or changes their password, is repaired by `up` -------
def test_a_student_who_removes_the_admin_key_is_reported_then_repaired_by_up(room, tiny_image):
    code, _out, err = room.as_student(
        "student-01", "echo mine > ~/keep.txt && "
                      f"docker run --rm -v /root:/r {tiny_image} rm /r/.ssh/authorized_keys")
    assert code == 0, err

    code, hosts = room.status()
    assert code == 3
    one = hosts["student-01"]
    assert one["state"] == "failed" and one["checks"]["admin"] is False
    assert "the admin key is refused" in one["detail"] and "`classroom up` repairs it" in one["detail"]
    assert one["checks"]["ssh"] is True  # the student's own login still works, and says so
    assert hosts["student-02"]["state"] == "ready" and hosts["student-02"]["checks"]["admin"] is True
    table = room.cli("status")
    assert table.exit_code == 3 and "the admin key is refused" in table.stdout, table

    run = room.cli("up")
    assert run.exit_code == 0, run
    assert "admin access repaired" in next(line for line in run.stdout.splitlines() if " student-01 " in line)
    code, hosts = room.status()
    assert code == 0, hosts
    assert hosts["student-01"]["state"] == "ready" and hosts["student-01"]["checks"]["admin"] is True
    assert room.as_student("student-01", "cat ~/keep.txt")[1].strip() == "mine"


def test_a_student_who_changes_their_password_gets_the_sheets_back_from_up(room):
    row = room.roster()["student-01"]
    new = "Quite-Different-Secret-9471"
    code, _out, err = room.as_student("student-01", f"printf '%s\\n' {row['password']} {new} {new} | passwd")
    assert code == 0, err
    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(row["port"], row["user"], row["password"]).close()

    code, hosts = room.status()
    assert code == 3
    one = hosts["student-01"]
    assert one["state"] == "failed" and one["checks"]["ssh"] is False and one["checks"]["admin"] is True
    assert "password of student-01 differs from the sheet's" in one["detail"]

    run = room.cli("up")
    assert run.exit_code == 0, run
    assert "password of student-01 restored" in next(line for line in run.stdout.splitlines()
                                                     if " student-01 " in line)
    ssh_connect(row["port"], row["user"], row["password"]).close()
    with pytest.raises(paramiko.AuthenticationException):
        ssh_connect(row["port"], row["user"], new).close()
    code, hosts = room.status()
    assert code == 0 and hosts["student-01"]["state"] == "ready", hosts


def test_status_says_when_the_sheets_password_cannot_log_in_though_the_hash_is_right(room):
    """`status` sends no password: it reads as root what a password login needs besides the hash."""
    row = room.roster()["student-02"]
    room.root("student-02", "usermod -s /usr/sbin/nologin student-02")
    try:
        code, hosts = room.status()
        assert code == 3
        two = hosts["student-02"]
        assert two["checks"]["ssh"] is False and two["checks"]["admin"] is True, two
        assert "student-02 has no valid login shell" in two["detail"]
        assert hosts["student-01"]["state"] == "ready"
    finally:
        room.root("student-02", "usermod -s /bin/bash student-02")
    room.root("student-02", "chage -E 0 student-02")
    try:
        code, hosts = room.status()
        assert code == 3 and "student-02's account has expired" in hosts["student-02"]["detail"], hosts
        with pytest.raises(paramiko.AuthenticationException):  # what the check stands for
            ssh_connect(row["port"], row["user"], row["password"]).close()
    finally:
        room.root("student-02", "chage -E -1 student-02")
    code, hosts = room.status()
    assert code == 0 and hosts["student-02"]["checks"]["ssh"] is True, hosts
    ssh_connect(row["port"], row["user"], row["password"]).close()


# --- 4. untrusted output stays untrusted --------------------------------------------------------------
def test_hostile_shell_startup_files_never_reach_the_trainers_terminal(room):
    rc = f"echo '{HOSTILE}'\necho '{HOSTILE}' >&2\n"
    home = "/home/student-01"
    room.root("student-01", f"for f in .bashrc .profile; do cp {home}/$f {home}/$f.saved 2>/dev/null || "
                            f": > {home}/$f.saved; printf '%s' \"$RC\" > {home}/$f; done", RC=rc)
    try:
        code, out, _ = room.as_student("student-01", "true")
        assert HOSTILE in out  # the files are live: every command run through the shell prints it

        status = room.cli("status", subprocess=True)
        assert status.exit_code == 0, status
        assert_no_terminal_control(status)
        as_json = room.cli("status", "--json", subprocess=True)
        assert as_json.exit_code == 0, as_json
        assert_no_terminal_control(as_json)
        one = next(h for h in json.loads(as_json.stdout)["hosts"] if h["name"] == "student-01")
        assert one["state"] == "ready" and all(one["checks"].values()) and one["detail"] is None, one
        assert set(one["checks"]) == {"admin", "ssh", "docker", "images", "exercises"}

        up = room.cli("up", subprocess=True)
        assert up.exit_code == 0, up
        assert_no_terminal_control(up)

        shown = room.cli("exec", "--hosts", "student-01", "--", "cat", f"{home}/.bashrc", subprocess=True)
        assert shown.exit_code == 0, shown
        assert_no_terminal_control(shown)
        assert "[red]PWNED[/red]" in shown.stdout  # shown as text, not as markup
    finally:
        room.root("student-01", f"for f in .bashrc .profile; do mv {home}/$f.saved {home}/$f; done")


def test_host_text_in_errors_is_shown_as_text_never_as_markup(room):
    """A student who is root on their host (Docker) makes every admin command fail with their
    words: `up`, `reset` and `exec` quote them, cleaned and escaped."""
    room.root("student-02", "cp /root/.bashrc /root/.bashrc.saved && printf '%s' \"$RC\" > /root/.bashrc",
              RC=f"echo '{HOSTILE}' >&2\nexit 3\n")
    try:
        up = room.cli("up", subprocess=True)
        assert up.exit_code == 3, up
        assert_no_terminal_control(up)
        assert "[red]PWNED[/red]" in next(line for line in up.stdout.splitlines() if " student-02 " in line), up

        reset = room.cli("reset", "student-02", subprocess=True)
        assert reset.exit_code == 3, reset
        assert_no_terminal_control(reset)
        assert "student-02: " in reset.stderr and "[red]PWNED[/red]" in reset.stderr, reset

        ran = room.cli("exec", "--hosts", "student-02", "--", "true", subprocess=True)
        assert ran.exit_code == 1, ran
        assert_no_terminal_control(ran)
        assert "[red]PWNED[/red]" in ran.stdout, ran

        status = room.cli("status", "--json", subprocess=True)
        assert status.exit_code == 3
        assert_no_terminal_control(status)
        two = next(h for h in json.loads(status.stdout)["hosts"] if h["name"] == "student-02")
        assert two["state"] == "failed" and "PWNED" not in (two["detail"] or "")
    finally:
        room.root("student-02", "mv /root/.bashrc.saved /root/.bashrc")
    code, hosts = room.status()
    assert code == 0, hosts


# --- 2. no student password on a machine that other students control ----------------------------------
GRAB = """#!/bin/sh
{ printf '%s ' "${PAM_USER:-chpasswd}"; cat; echo; } >> /var/tmp/grabbed
"""


def test_a_root_student_on_the_shared_swarm_node_captures_no_password(swarm_room):
    room = swarm_room
    passwords = {student: row["password"] for student, row in room.roster().items()}
    # As root on swarm-1 (any student can be, through Docker): capture what PAM and chpasswd see.
    room.root("swarm-1", "printf '%s' \"$GRAB\" > /usr/local/bin/grab && chmod 755 /usr/local/bin/grab && "
                         ": > /var/tmp/grabbed && "
                         "sed -i '1i auth optional pam_exec.so quiet expose_authtok /usr/local/bin/grab' "
                         "/etc/pam.d/sshd && "
                         "sed -i '1i password optional pam_exec.so quiet expose_authtok /usr/local/bin/grab' "
                         "/etc/pam.d/common-password && "
                         "mv /usr/sbin/chpasswd /usr/sbin/chpasswd.real && "
                         "printf '#!/bin/sh\\ntee -a /var/tmp/grabbed | /usr/sbin/chpasswd.real \"$@\"\\n' "
                         "> /usr/sbin/chpasswd && chmod 755 /usr/sbin/chpasswd",
              GRAB=GRAB)
    room.root("swarm-1", "usermod -p '!' student-02")  # `up` must set this account again

    up = room.cli("up")
    status = room.cli("status", "--json")
    grabbed = room.root("swarm-1", "cat /var/tmp/grabbed")
    for student, password in passwords.items():
        assert password not in grabbed, f"{student}'s password reached swarm-1"
    assert up.exit_code == 0, up
    assert "password of student-02 restored" in next(line for line in up.stdout.splitlines() if " swarm-1 " in line)
    assert status.exit_code == 0, status
    # The node holds the hashes of the students' Swarm passwords, never of their own hosts' ones.
    hashes, own_hashes = room.hashes(swarm=True), room.hashes()
    assert f"student-02:{hashes['student-02']}" in grabbed  # the hooks were live: they saw the hash
    for student, hashed in hashes.items():
        assert room.root("swarm-1", f"getent shadow {student} | cut -d: -f2").strip() == hashed != own_hashes[student]
    assert "No such file" in room.root("swarm-1", "ls /etc/classroom/accounts 2>&1 || true")

    # The control: a student who logs in there themselves does hand their Swarm password (only
    # that one: it opens the Swarm nodes only) to the hook.
    swarm_port = next(h["port"] for h in json.loads(status.stdout)["hosts"] if h["name"] == "swarm-1")
    code, out, err = room.as_student("student-01", "id -un", port=swarm_port, swarm=True)
    assert (code, out.strip()) == (0, "student-01"), err
    grabbed = room.root("swarm-1", "cat /var/tmp/grabbed")
    assert room.roster()["student-01"]["swarm_password"] in grabbed
    assert passwords["student-01"] not in grabbed
