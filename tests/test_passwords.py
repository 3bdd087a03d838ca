"""Passwords: format, strength computed from the real word list, and the list's own hygiene."""

from __future__ import annotations

import math
import re
from importlib.resources import files

from provision import passwords
from provision.passwords import new_password, password_entropy_bits, wordlist

FORMAT = re.compile(r"^[a-z]{3,6}-[a-z]{3,6}-[a-z]{3,6}-[0-9]{4}$")


def test_format_is_three_words_and_four_digits():
    for _ in range(200):
        password = new_password()
        assert FORMAT.match(password), password
        *words, _digits = password.split("-")
        assert all(word in wordlist() for word in words)


def test_entropy_is_at_least_40_bits_from_the_list_size():
    assert password_entropy_bits() >= passwords.MIN_ENTROPY_BITS
    assert password_entropy_bits() >= 40
    # The figure must follow the list, not a hard-coded constant.
    expected = 3 * math.log2(len(set(wordlist()))) + 4 * math.log2(10)
    assert abs(password_entropy_bits() - expected) < 1e-9


def test_passwords_do_not_repeat_over_1000_draws():
    drawn = [new_password() for _ in range(1000)]
    assert len(set(drawn)) == len(drawn)


def test_password_is_safe_in_a_chpasswd_line():
    for _ in range(200):
        password = new_password()
        assert ":" not in password
        assert not any(ch.isspace() for ch in password)
        # Nothing a shell, YAML or CSV would treat specially.
        assert re.fullmatch(r"[a-z0-9-]+", password)


def test_wordlist_size_uniqueness_and_shape():
    words = wordlist()
    assert len(words) >= 1024
    assert len(set(words)) == len(words)
    for word in words:
        assert re.fullmatch(r"[a-z]{3,6}", word), word


def test_words_file_has_no_duplicates_or_blank_lines():
    lines = (files("provision") / "words.txt").read_text(encoding="utf-8").splitlines()
    assert all(line == line.strip() and line for line in lines)
    assert len(lines) == len(set(lines))
