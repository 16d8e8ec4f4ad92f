"""botvault.passphrase_policy: the shipped wordlist, the generator, the length rule, warnings."""

from __future__ import annotations

import math
import random

import pytest

from botvault.errors import InvalidInputError
from botvault.passphrase_policy import (
    MIN_LENGTH,
    WEAK_BELOW_BITS,
    check_new_passphrase,
    estimate_bits,
    generate_passphrase,
    wordlist,
)

EFF_WORDS = 7776


def test_wordlist_is_the_eff_large_list() -> None:
    words = wordlist()
    assert len(words) >= EFF_WORDS
    assert len(set(words)) == len(words)
    assert all(w == w.lower() and w.strip() == w and " " not in w for w in words)
    assert (words[0], words[-1]) == ("abacus", "zoom")  # EFF's first and last


def test_generated_passphrase_has_six_words_from_the_list() -> None:
    words = set(wordlist())
    for _ in range(20):
        phrase = generate_passphrase()
        parts = phrase.split(" ")
        assert len(parts) >= 6
        assert all(p in words for p in parts)
        # The generator's entropy: each word is a uniform choice from the whole list.
        assert len(parts) * math.log2(len(words)) >= 6 * math.log2(EFF_WORDS) > 77.5
        # The estimate can be lower (it prices "secret" or a repeated word as an attacker
        # would try them first) but never warns about a generated passphrase.
        assert estimate_bits(phrase) >= WEAK_BELOW_BITS
        assert check_new_passphrase(phrase) == []


def test_estimate_of_distinct_plain_words() -> None:
    # Six distinct list words, none of them a common password: each priced as a list word.
    phrase = "abacus zoology tundra pickle velvet canyon"
    assert estimate_bits(phrase) >= 6 * math.log2(EFF_WORDS)


def test_generator_options() -> None:
    words = set(wordlist())
    eight = generate_passphrase(8, rng=random.Random(1), separator="-")
    assert eight == generate_passphrase(8, rng=random.Random(1), separator="-")
    assert len(eight.split("-")) >= 8  # some EFF words contain a hyphen themselves
    assert all(w in words for w in generate_passphrase(10).split())
    with pytest.raises(InvalidInputError, match="at least 6 words"):
        generate_passphrase(5)


def test_generator_uses_the_whole_list() -> None:
    rng = random.Random(7)
    seen = {w for _ in range(5000) for w in generate_passphrase(6, rng=rng).split()}
    assert len(seen) > 0.95 * EFF_WORDS  # 30,000 uniform draws cover ~98%


@pytest.mark.parametrize("short", ["", "a", "123456789", "short pw!", "é" * 9])
def test_short_passphrases_refused(short: str) -> None:
    with pytest.raises(InvalidInputError, match=f"at least {MIN_LENGTH}") as info:
        check_new_passphrase(short)
    if len(short) > 3:
        assert short not in str(info.value)


def test_whitespace_only_refused() -> None:
    with pytest.raises(InvalidInputError, match="only whitespace"):
        check_new_passphrase(" " * 20)


def test_length_counts_composed_characters() -> None:
    # "é" typed as e + combining accent is one character after NFC, as the KDF sees it.
    with pytest.raises(InvalidInputError):
        check_new_passphrase("e\u0301" * 9)


@pytest.mark.parametrize("weak", ["password123456", "aaaaaaaaaaaa", "abcdefghijkl",
                                  "qwertyuiop1234", "1234567890", "PasswordPassword",
                                  "abcabcabcabcabc", "kraken2024!!"])
def test_weak_passphrases_warned(weak: str) -> None:
    warnings = check_new_passphrase(weak)
    assert warnings
    assert estimate_bits(weak) < WEAK_BELOW_BITS
    assert all(weak not in w and weak.lower() not in w for w in warnings)


@pytest.mark.parametrize("strong", ["Xk9#mQ2$vL-7pR", "pL8!zQ4@wN6^", "orbit velvet canyon "
                                    "marble tundra pickle"])
def test_strong_passphrases_not_warned(strong: str) -> None:
    assert check_new_passphrase(strong) == []


def test_surrounding_whitespace_warned() -> None:
    phrase = " " + generate_passphrase()
    assert any("whitespace" in w for w in check_new_passphrase(phrase))


def test_estimate_orders_sensibly() -> None:
    assert estimate_bits("") == 0
    assert estimate_bits("aaaaaaaaaaaa") < estimate_bits("akqmzvxrtwpl")
    assert estimate_bits("akqmzvxrtwpl") < estimate_bits("aKq3z!xR7w-l")
    four = " ".join(wordlist()[i] for i in (10, 2000, 4000, 7000))
    six = " ".join(wordlist()[i] for i in (10, 2000, 4000, 7000, 5000, 300))
    assert estimate_bits(four) < WEAK_BELOW_BITS <= estimate_bits(six)
    # Long inputs stay fast and bounded.
    assert estimate_bits("x" * 100_000) < 30
