"""Student passwords: easy to read aloud and type, hard to guess.

A password is three words from `words.txt` and four digits, joined by hyphens, such as
`maple-river-cloud-4821`. Words beat random characters in a classroom: the trainer can read
one out, a student can type it without squinting at `l`/`1`/`I`, and it fits a chpasswd
`user:password` line because it contains only lowercase letters, digits and `-`.
"""

from __future__ import annotations

import math
import secrets
from functools import lru_cache
from importlib.resources import files

WORD_COUNT = 3
DIGIT_COUNT = 4
SEPARATOR = "-"
MIN_ENTROPY_BITS = 40


@lru_cache(maxsize=1)
def wordlist() -> tuple[str, ...]:
    """The distinct words of `words.txt`, read once (works from the source tree and when installed)."""
    text = (files("provision") / "words.txt").read_text(encoding="utf-8")
    # dict.fromkeys keeps the file's order and drops duplicates, so entropy is never overstated.
    return tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def password_entropy_bits() -> float:
    """Entropy of `new_password()` in bits, from the real list size: each part is drawn independently."""
    return WORD_COUNT * math.log2(len(wordlist())) + DIGIT_COUNT * math.log2(10)


def new_password() -> str:
    """A fresh random password such as `maple-river-cloud-4821`, from the OS's CSPRNG."""
    words = wordlist()
    parts = [secrets.choice(words) for _ in range(WORD_COUNT)]
    parts.append(f"{secrets.randbelow(10**DIGIT_COUNT):0{DIGIT_COUNT}d}")
    return SEPARATOR.join(parts)


# --- what hosts get instead of the password ----------------------------------------------------------
# Hosts receive only a salted SHA-512 crypt hash (`$6$rounds=...$salt$...`), made here once per
# student, set with `chpasswd -e`: the plaintext never leaves the trainer's machine, so a student
# who is root on a shared Swarm node (docker group) and hooks PAM or chpasswd captures nothing.
# Those nodes' /etc/shadow still holds every student's hash, readable by any of them, hence:
# HASH_ROUNDS = 20 000, four times glibc's default. A high-end GPU tries about 2 M SHA-512 crypt
# hashes a second at 5000 rounds (hashcat mode 1800), so about 500 000 at 20 000: a 44.6-bit
# password (see above) takes it about 300 days on average, against a classroom that lives a day.
# The price is paid by sshd at every password login, and `up` proves one per student host (status
# compares /etc/shadow instead, checks.py): measured on a local host, a password login costs 34 ms
# of the host's CPU at 5000 rounds, 49 ms at 20 000 and 79 ms at 50 000 (sshd hashes more than
# once); 30 such logins cost the hosts 4.2 s of CPU in all at 20 000 and 5.2 s at 50 000, on a
# 2-core machine.
# SHA-512 crypt rather than yescrypt: every Linux libc verifies it (chpasswd -e needs that), and
# it can be made without the host. Made with libpass (the maintained fork of passlib, same
# `passlib` import): the stdlib's `crypt` is deprecated since Python 3.11 and gone in 3.13.
HASH_ROUNDS = 20_000


def crypt_hash(password: str) -> str:
    """A fresh salted SHA-512 crypt hash of `password`, as /etc/shadow holds it."""
    from passlib.hash import sha512_crypt

    return sha512_crypt.using(rounds=HASH_ROUNDS).hash(password)


def hash_matches(password: str, hashed: str) -> bool:
    """Whether `hashed` (a SHA-512 crypt hash) is the hash of `password`; False for any other kind."""
    from passlib.hash import sha512_crypt

    try:
        return sha512_crypt.verify(password, hashed)
    except ValueError:  # not a SHA-512 crypt hash (edited by hand, or another scheme)
        return False
