"""What a new passphrase must be, a rough strength estimate, and a generator.

The vault's only protection against someone holding a copy of the file is the passphrase
(Argon2id makes each guess slow, not impossible). So a new passphrase must be at least
`MIN_LENGTH` characters, and one that a rough estimate finds guessable gets warnings.
`generate_passphrase` draws words from the EFF large wordlist (7,776 words, shipped in
`vault/data/wordlist.txt`; source and licence in `vault/data/README.md`).

`tried_first` flags what attackers try before anything else (famous example phrases and
quotations, keyboard walks, repeats); the CLI asks to confirm such a passphrase at a terminal
and refuses it without one. Why not a maintained estimator: zxcvbn 4.5.0 (PyPI), measured
here, scores "correct horse battery staple" and "the quick brown fox jumps over the lazy
dog" 4 of 4 (its best), so it misses exactly the famous examples this check exists for; it
catches walks and repeats, which the few lines below catch too. A dependency that still
needs this list would add weight without closing the gap.

Nothing here puts the passphrase, or any part of it, in a message.
"""

from __future__ import annotations

import functools
import math
import random
import secrets
import unicodedata
from importlib import resources

from .errors import InvalidInputError

__all__ = [
    "MIN_LENGTH",
    "MIN_WORDS",
    "TRIED_FIRST_BELOW_BITS",
    "WEAK_BELOW_BITS",
    "check_new_passphrase",
    "estimate_bits",
    "generate_passphrase",
    "tried_first",
    "wordlist",
]

MIN_LENGTH = 10
MIN_WORDS = 6
# Below this the estimate warns. 60 bits is about five random words from the list; with
# Argon2id at ~1 s a guess that is far beyond anyone's reach, and the estimate is rough
# enough that a margin matters.
WEAK_BELOW_BITS = 60.0
# Below this a passphrase is one attackers try first (confirmed at a terminal, refused
# without one), as the named cases of `tried_first` are. Two random words of the list are
# about 27 bits; password123 about 15, qwertyuiop about 26; a random 10-character password
# over all classes about 65.
TRIED_FIRST_BELOW_BITS = 32.0
# Only this much of a passphrase is examined; anything longer is strong by length alone.
_MAX_EXAMINED = 256
_MIN_WORD = 3

# Passwords at the very top of every leaked-password list that the EFF wordlist lacks.
# An attacker tries these first, so each costs only a few bits. Deliberately short: it is
# a nudge, not a breach corpus.
_COMMON = frozenset({
    "password", "passw0rd", "qwerty", "qwertz", "azerty", "asdf", "zxcv", "letmein",
    "welcome", "admin", "administrator", "login", "iloveyou", "monkey", "dragon", "master",
    "sunshine", "princess", "football", "baseball", "superman", "batman", "trustno1",
    "shadow", "abc", "secret", "changeme", "root", "toor", "test", "guest", "hello",
    "kraken", "bitcoin", "crypto", "trading", "freqtrade", "botvault", "vault",
})
_COMMON_BITS = math.log2(len(_COMMON) * 4)  # a handful of variants of each

# Phrases that are famous as passphrase examples or quotations: every cracking dictionary
# has them (with spaces, without, capitalised), however long they are. Compared after
# lowercasing and dropping everything but letters and digits.
_FAMOUS = frozenset({
    "correcthorsebatterystaple", "thequickbrownfoxjumpsoverthelazydog", "tobeornottobe",
    "loremipsumdolorsitamet", "maytheforcebewithyou", "iloveyou", "opensesame",
    "letmein", "hunter2", "trustno1", "iamtheone", "thisismypassword", "mypassword",
    "supersecretpassword", "passwordpassword", "allyourbasearebelongtous",
    "helloworld", "changeme", "donttreadonme", "nevergonnagiveyouup",
    "onetwothreefourfive", "winteriscoming", "thetruthisoutthere", "carpediem",
    "iwantatrustedcomputer", "thisisaverylongpassphrase", "mysecretpassphrase",
    "tr0ub4dor3",
})
# Keyboard rows (US and common European layouts) and the digit row, walked either way.
_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "yxcvbnm",
         "azertyuiop", "qsdfghjklm", "wxcvbn", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")
_MIN_WALK = 3

_POOLS = {"lower": 26, "upper": 26, "digit": 10, "symbol": 33, "other": 100}


@functools.cache
def wordlist() -> tuple[str, ...]:
    """The shipped wordlist, in file order (loaded once, from package data)."""
    text = resources.files("botvault.data").joinpath("wordlist.txt").read_text(encoding="utf-8")
    return tuple(word for word in (line.strip() for line in text.splitlines()) if word)


@functools.cache
def _word_set() -> frozenset[str]:
    return frozenset(wordlist())


@functools.cache
def _longest_word() -> int:
    return max(len(w) for w in _word_set() | _COMMON)


def generate_passphrase(words: int = MIN_WORDS, *, rng: random.Random | None = None,
                        separator: str = " ") -> str:
    """`words` words drawn uniformly from `wordlist()`, joined by `separator`.

    Each word adds log2(7776) ≈ 12.9 bits: six give ≈ 77.5 bits. Spaces are the default
    separator because four words of the list contain a hyphen. `rng` is for tests; by
    default the OS's CSPRNG (`secrets.SystemRandom`) chooses.
    """
    if words < MIN_WORDS:
        raise InvalidInputError(f"a generated passphrase has at least {MIN_WORDS} words "
                                f"(asked for {words})")
    chooser = rng if rng is not None else secrets.SystemRandom()
    pool = wordlist()
    return separator.join(chooser.choice(pool) for _ in range(words))


def check_new_passphrase(passphrase: str) -> list[str]:
    """Refuse a passphrase shorter than `MIN_LENGTH`; return warnings when it looks weak.

    Warnings are advice for the user (print them, ask to confirm); they never quote the
    passphrase.
    """
    text = unicodedata.normalize("NFC", passphrase)
    if len(text) < MIN_LENGTH:
        raise InvalidInputError(
            f"the passphrase is {len(text)} character{'' if len(text) == 1 else 's'}; at least "
            f"{MIN_LENGTH} are required",
            hint=f"use {MIN_WORDS} or more random words, e.g. a generated passphrase")
    if not text.strip():
        raise InvalidInputError("the passphrase is only whitespace")
    if text.strip() != text:
        # Not refused: a passphrase file or prompt may keep the spaces. But it is a trap.
        warnings = ["the passphrase starts or ends with whitespace, which is easy to lose "
                    "when typing it again"]
    else:
        warnings = []
    bits = estimate_bits(text)
    if bits < WEAK_BELOW_BITS:
        warnings.append(
            f"this passphrase looks guessable: about {bits:.0f} bits by a rough estimate, "
            f"below {WEAK_BELOW_BITS:.0f}; {MIN_WORDS} random words give about "
            f"{MIN_WORDS * math.log2(len(wordlist())):.0f}")
        warnings.extend(_reasons(text))
    return warnings


def tried_first(passphrase: str) -> str | None:
    """Why an attacker would try this passphrase first (a famous example or quotation, a
    keyboard walk, a repeat), or None. Such a passphrase needs a confirmation at a terminal
    and is refused without one: length does not save it, since it is in every list."""
    text = unicodedata.normalize("NFC", passphrase)[:_MAX_EXAMINED].lower()
    core = "".join(ch for ch in text if ch.isalnum())
    if not core:
        return None
    named = _named_reason(core)
    if named is not None:
        return named
    # The same judgement for what the named cases miss: a common password with digits
    # added (password123), a walk with a word (qwertyuiop2024). Issue 16: password123 was
    # accepted while qwertyuiop was refused; now the estimate decides for both.
    bits = estimate_bits(passphrase)
    if bits < TRIED_FIRST_BELOW_BITS:
        return (f"it is built from common passwords, sequences or keyboard rows (about "
                f"{bits:.0f} bits by a rough estimate), which attackers try first")
    return None


def _named_reason(core: str) -> str | None:
    """The named cases: a famous phrase, a keyboard walk, a repeat, very few characters."""
    for famous in _FAMOUS:
        if famous in core and len(core) - len(famous) < 6:
            return "it is a famous example or a common phrase, which attackers try first"
    if _walked(core) >= len(core) * 0.8:
        return "it is a keyboard walk (like qwerty or 1qaz2wsx), which attackers try first"
    for size in range(1, len(core) // 2 + 1):
        if len(core) % size == 0 and core[:size] * (len(core) // size) == core:
            return "it is one short piece repeated, which attackers try first"
    if len(set(core)) <= 3:
        return "it is made of three or fewer different characters"
    return None


def _walked(core: str) -> int:
    """How many characters of `core` lie in runs of keys next to each other on a row."""
    covered = [False] * len(core)
    rows = [*_ROWS, *(r[::-1] for r in _ROWS)]
    for start in range(len(core)):
        for row in rows:
            end = start
            while end < len(core) and core[start:end + 1] in row:
                end += 1
            if end - start >= _MIN_WALK:
                for i in range(start, end):
                    covered[i] = True
    return sum(covered)


def estimate_bits(passphrase: str) -> float:
    """A rough estimate of how many bits of guessing the passphrase resists.

    This is a heuristic, not a measurement: it cannot know how the passphrase was chosen,
    so it guesses how an attacker would try it, and it can be wrong both ways. The model:

    - the passphrase is cut (by dynamic programming, cheapest cut wins) into pieces, each
      with a cost in bits;
    - a word of the shipped wordlist (3+ letters, any case) costs log2(7776) ≈ 12.9 bits,
      plus 1 bit if it has capitals;
    - a very common password ("password", "qwerty", ...) costs about 7 bits;
    - a run of one repeated character, or a sequence such as "abcd", "4321", costs the
      first character plus log2 of its length (plus a bit for the direction);
    - a repeat of an earlier piece (3+ characters) costs a few bits;
    - a whitespace character costs 1 bit (words are tried with spaces between them);
    - any other character costs log2 of the pool of character classes the passphrase uses
      (26 lower, 26 upper, 10 digits, 33 symbols, 100 for anything else), so a passphrase
      of one class gets the small pool.

    Only the first 256 characters are examined.
    """
    text = unicodedata.normalize("NFC", passphrase)[:_MAX_EXAMINED]
    if not text:
        return 0.0
    char_bits = math.log2(sum(_POOLS[c] for c in {_char_class(ch) for ch in text}))
    best = [0.0] + [math.inf] * len(text)
    for end in range(1, len(text) + 1):
        for start, cost in _pieces_ending_at(text, end, char_bits):
            best[end] = min(best[end], best[start] + cost)
    return best[len(text)]


def _pieces_ending_at(text: str, end: int, char_bits: float) -> list[tuple[int, float]]:
    """(start, bits) of each way to read text[start:end] as one piece."""
    # Spaces between words are what an attacker tries first, so they add almost nothing.
    pieces = [(end - 1, 1.0 if text[end - 1].isspace() else char_bits)]
    lowered = text.lower()
    for start in range(max(0, end - _longest_word()), end - _MIN_WORD + 1):
        chunk = lowered[start:end]
        caps = 1.0 if chunk != text[start:end] else 0.0
        if chunk in _COMMON:
            pieces.append((start, _COMMON_BITS + caps))
        elif chunk in _word_set():
            pieces.append((start, math.log2(len(wordlist())) + caps))
    for start in _pattern_starts(text, end):
        length = end - start
        pieces.append((start, char_bits + math.log2(length) + 1.0))
    for start in range(0, end - _MIN_WORD + 1):
        if text[start:end] in text[:start]:
            pieces.append((start, 4.0 + math.log2(end - start)))
            break  # the longest repeat is the cheapest
    return pieces


def _pattern_starts(text: str, end: int) -> list[int]:
    """Starts of runs ending at `end` where each character is the previous one + step,
    for step -1, 0 or +1 (abc, 321, aaa), at least three characters long."""
    starts: list[int] = []
    for step in (-1, 0, 1):
        start = end - 1
        while start > 0 and ord(text[start]) - ord(text[start - 1]) == step:
            start -= 1
        # Every start inside the run is a candidate: the cheapest cut may begin mid-run.
        starts.extend(range(start, end - _MIN_WORD + 1))
    return starts


def _char_class(ch: str) -> str:
    if ch.isascii():
        if ch.islower():
            return "lower"
        if ch.isupper():
            return "upper"
        if ch.isdigit():
            return "digit"
        return "symbol"
    return "other"


def _reasons(text: str) -> list[str]:
    """Why the estimate is low, in words a user can act on (never quoting the text)."""
    reasons = []
    classes = {_char_class(ch) for ch in text if not ch.isspace()}
    if len(set(text.lower())) <= 3:
        reasons.append("it is made of very few different characters")
    elif len(classes) == 1 and not any(ch.isspace() for ch in text):
        reasons.append("it uses only one kind of character")
    lowered = text.lower()
    if any(word in lowered for word in _COMMON if len(word) >= 5):
        reasons.append("it contains one of the most common passwords")
    if any(_pattern_starts(text, end) for end in range(_MIN_WORD, len(text) + 1)):
        reasons.append("it contains a sequence or a repeated character (like abc, 123, aaa)")
    return reasons
