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
