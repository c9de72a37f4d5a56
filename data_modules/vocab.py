"""Open vocabularies: values a memory has never seen, drawn from generators whose spaces dwarf any training set.

Every generator draws strings (pronounceable words, capitalised names, digit strings, codes, two-word
phrases) from a space of millions, and splits that space by a keyed hash of the string itself:

    split(value) = train if h(value) mod 10 < 8, val if it is 8, test if it is 9     (h: blake2b, fixed key)

A split draws by rejection until the hash lands in its share, so the train, val and test values are disjoint
by construction, whatever the seeds, and a test value can never have occurred in training.
"""

from __future__ import annotations

import hashlib
from typing import Literal, get_args

import numpy as np

from ember.data_modules.splits import Split
from ember.errors import EmberConfigError

Kind = Literal["word", "short", "name", "digits", "code", "phrase"]
KINDS = get_args(Kind)
SHARE = {"train": range(0, 8), "val": range(8, 9), "test": range(9, 10)}  # tenths of the hash space
ONSETS = "b d f g h j k l m n p r s t v z".split()  # one consonant, one vowel, often no coda: easy to read
VOWELS = "a e i o u".split()
CODAS = ["", "", "", "n", "l", "r", "s"]
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"  # no I or O: they read as digits
MAX_TRIES = 1000


def split_of(value: str) -> Split:
    """The split a value belongs to: a pure function of the string (see the module docstring)."""
    tenth = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8, key=b"ember-vocab").digest()) % 10
    return next(split for split, share in SHARE.items() if tenth in share)


class Vocabulary:
    """One generator of open-vocabulary values.

    Args:
        kind: "word" (3 pronounceable syllables, lowercase), "short" (2 syllables, lowercase, at most 6
            letters), "name" (2 syllables, capitalised), "digits"
            (`length` digits in groups of four, like a phone number), "code" (two capital letters, a dash and
            `length` digits) or "phrase" (two words of 2 syllables).
        length: digits of a "digits" or "code" value.
    """

    def __init__(self, kind: Kind = "word", length: int = 6):
        if kind not in KINDS:
            raise EmberConfigError(f"kind={kind!r} is unknown: use one of {KINDS}")
        if length < 1:
            raise EmberConfigError(f"length={length} must be >= 1 digit")
        self.kind, self.length = kind, length

    def space(self) -> int:
        """About how many distinct values the generator can produce (all splits together; a few strings can be
        spelled by two syllable sequences)."""
        syllable = len(ONSETS) * len(VOWELS) * len(set(CODAS))
        return {"word": syllable**3, "short": syllable**2, "name": syllable**2, "phrase": syllable**4,
                "digits": 10**self.length, "code": len(LETTERS) ** 2 * 10**self.length}[self.kind]

    def raw(self, rng: np.random.Generator) -> str:
        """One value from the whole space, any split."""
        if self.kind == "digits":
            digits = "".join(str(d) for d in rng.integers(0, 10, self.length))
            return " ".join(digits[i : i + 4] for i in range(0, self.length, 4))
        if self.kind == "code":
            letters = "".join(LETTERS[i] for i in rng.integers(0, len(LETTERS), 2))
            return letters + "-" + "".join(str(d) for d in rng.integers(0, 10, self.length))
        if self.kind == "phrase":
            return f"{_word(rng, 2)} {_word(rng, 2)}"
        if self.kind == "short":
            return _word(rng, 2)
        return _word(rng, 2).capitalize() if self.kind == "name" else _word(rng, 3)

    def draw(self, rng: np.random.Generator, split: Split, count: int = 1) -> list[str]:
        """`count` distinct values of `split`. Stops with the fix when the split's share of the
        space cannot hold them (e.g. 2-digit codes for a session of 20 facts)."""
        share = len(SHARE[split]) / 10
        if count > share * self.space() / 4:  # rejection would mostly repeat values
            raise EmberConfigError(f"a {self.kind!r} vocabulary (length {self.length}) holds about "
                                   f"{int(share * self.space())} {split} values, too few for {count} distinct ones "
                                   "per session: raise its length, or use a larger kind (word, phrase)")
        out: list[str] = []
        for _ in range(MAX_TRIES * count):
            value = self.raw(rng)
            if split_of(value) == split and value not in out:
                out.append(value)
                if len(out) == count:
                    return out
        raise EmberConfigError(f"could not draw {count} distinct {split} values of kind {self.kind!r} in "
                               f"{MAX_TRIES * count} tries: raise its length or use a larger kind")


def _word(rng: np.random.Generator, syllables: int) -> str:
    """`syllables` syllables, each onset + vowel + (often no) coda."""
    return "".join(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))] +
                   CODAS[rng.integers(len(CODAS))] for _ in range(syllables))
