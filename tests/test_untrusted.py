"""Issue 8 without an engine: host text is cleaned and escaped, the checks' line protocol reads
only what it expects, and hosts are only ever given salted SHA-512 crypt hashes."""

from __future__ import annotations

import io
import json
import shlex
import stat

from rich.console import Console

from provision.checks import _parse, check_command
from provision.ssh import script
from provision.errors import last_line
from provision.passwords import HASH_ROUNDS, crypt_hash, hash_matches, new_password
from provision.ssh import RemoteError
from provision.state import ClassroomState
from provision.untrusted import clean, shown

HOSTILE = "\x1b]0;PWNED\x07\x1b[2J[red]PWNED[/red]\x1b[31mred\x1b[0m\x9b2J\x1bP+q\x1b\\\r\x00\x7f ok"


def rendered(markup: str) -> str:
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="truecolor", width=200, highlight=False).print(markup)
    return buffer.getvalue()


def test_clean_keeps_text_newlines_and_tabs_and_drops_all_terminal_control():
    assert clean(HOSTILE) == "[red]PWNED[/red]red ok"
    assert clean("line one\n\tline two\n") == "line one\n\tline two\n"
    assert clean("été · 日本") == "été · 日本"
    for control in ("\x1b", "\x07", "\x9b", "\r", "\x00", "\x7f", "\x08"):
        assert control not in clean(f"a{control}b"), repr(control)


def test_shown_text_is_never_rich_markup():
    out = rendered(f"detail: {shown(HOSTILE)}")
    assert "[red]PWNED[/red]" in out  # the brackets are shown as typed
    assert "\x1b]" not in out and "\x07" not in out and "\x1b[2J" not in out
    assert "\x1b[31m" not in out  # Rich styled nothing: no colour code at all
    assert rendered("[red]x[/red]") != "x\n"  # the check can fail: real markup does colour


def test_host_words_in_errors_arrive_clean():
    assert last_line(f"first\n{HOSTILE}\n") == "[red]PWNED[/red]red ok"
    assert RemoteError(f"copying failed: {HOSTILE}").message == "copying failed: [red]PWNED[/red]red ok"


def test_the_checks_read_only_well_formed_lines():
    output = "\n".join([
        f"{HOSTILE}",
        "shadow student-01 $6$rounds=50000$salt$hash",
        "shadow student-01 $6$forged",  # later lines of a kind never win (check_host takes the first)
        "docker ok; rm -rf /",
        "docker ok",
        "images 1 0 extra",
        "images 1 0",
        "exercises 1 0 x",
        "whoami student-01",
        "[red]docker[/red] ok",
    ])
    fields = _parse(output)
    assert fields == {
        "shadow": [("student-01", "$6$rounds=50000$salt$hash"), ("student-01", "$6$forged")],
        "docker": [("ok",)],
        "images": [("1", "0")],
        "whoami": [("student-01",)],
    }


def test_the_check_runs_as_the_student_without_their_start_up_files_and_without_secrets():
    command = check_command(["student-01"], "student-01", images=True, exercises=True)
    root = script("status_host.sh")
    assert 'runuser -u "$CHECK_USER" -- env -i HOME="$H"' in root
    assert "</dev/null" in root  # and nothing of the session's stdin reaches the student's side
    assert 'getent shadow "$user"' in root
    assert shlex.split(command)[-2:] == ["student-01", "student-01"]  # the user checked, the account
    assert "$6$" not in command  # the sheet's hash is compared here, never sent to the host


def test_a_crypt_hash_is_salted_slow_and_verifiable():
    password = new_password()
    first, second = crypt_hash(password), crypt_hash(password)
    assert first.startswith(f"$6$rounds={HASH_ROUNDS}$") and HASH_ROUNDS >= 20_000
    assert first != second  # salted
    assert password not in first
    assert hash_matches(password, first) and hash_matches(password, second)
    assert not hash_matches(password + "x", first)
    assert not hash_matches(password, "not a hash") and not hash_matches(password, "")


def test_password_hashes_are_made_once_kept_private_and_follow_their_password(tmp_path):
    state = ClassroomState("t-hashes", root=tmp_path)
    passwords = state.passwords(["student-01", "student-02"])
    assert state.known_password_hashes() == {}
    hashes = state.password_hashes(passwords)
    path = state.path / "password_hashes.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == hashes
    assert state.password_hashes(passwords) == hashes  # a re-run keeps them: hosts stay unchanged
    assert state.password_hashes({"student-02": passwords["student-02"]}) == {"student-02": hashes["student-02"]}
    changed = {**passwords, "student-01": "another-pass-word-1234"}
    again = state.password_hashes(changed)
    assert again["student-02"] == hashes["student-02"]
    assert again["student-01"] != hashes["student-01"] and hash_matches("another-pass-word-1234", again["student-01"])
    assert password_not_in_file(path, passwords)


def password_not_in_file(path, passwords) -> bool:
    text = path.read_text()
    return all(password not in text for password in passwords.values())


def test_the_login_line_reads_only_the_known_reasons():
    fields = _parse("login student-01 shell\nlogin student-02 [red]x[/red]\n"
                    "login student-03 ok extra\nlogin student-04 ok\n")
    assert fields == {"login": [("student-01", "shell"), ("student-04", "ok")]}


def test_a_hand_edited_password_gets_a_new_hash_although_the_hashes_were_checked_before(tmp_path):
    state = ClassroomState("t-hashes-memo", root=tmp_path)
    passwords = state.passwords(["student-01", "student-02"])
    hashes = state.password_hashes(passwords)
    assert state.password_hashes(passwords) == hashes  # checked once: remembered, not checked again
    assert state.password_hashes({"student-02": passwords["student-02"]}) == {"student-02": hashes["student-02"]}
    roster = state.path / "passwords.json"
    edited = {**passwords, "student-01": "edited-by-hand-word-4321"}
    roster.write_text(json.dumps(edited))  # in place, as an editor would
    again = state.password_hashes(state.known_passwords())
    assert again["student-02"] == hashes["student-02"]
    assert hash_matches("edited-by-hand-word-4321", again["student-01"])
    assert not hash_matches(passwords["student-01"], again["student-01"])


def test_a_hand_edited_hash_is_made_anew_although_the_hashes_were_checked_before(tmp_path):
    state = ClassroomState("t-hashes-memo2", root=tmp_path)
    passwords = state.passwords(["student-01", "student-02"], swarm=True)
    hashes = state.password_hashes(passwords, swarm=True)
    path = state.path / "swarm_password_hashes.json"
    path.write_text(json.dumps({**hashes, "student-01": crypt_hash("not-the-password-5678")}))
    again = state.password_hashes(passwords, swarm=True)
    assert again["student-02"] == hashes["student-02"]
    assert hash_matches(passwords["student-01"], again["student-01"])
    assert password_not_in_file(state.path / "swarm_password_hashes.json.checked", passwords)
