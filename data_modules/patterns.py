"""Procedural patterns (PM benchmark, SPEC 4): a session-specific rule, applied again and again
with repetitions further apart than the working-memory window; error on the k-th repetition.

Two rules; what carries over between repetitions is the rule, never the string.

`argument_order` (default): a tool call whose argument order is fixed for the session. Each
repetition asks for the call with new values, listed in a fresh random order; the answer writes
them in the session's order. The first answer can only guess the order (chance 1/args!), later
ones can recall it:

    ask book: size 2, city 7, date 4
    book(city=7, date=4, size=2)
    <distractor: gap x W bytes>
    ask book: date 1, size 9, city 3
    book(city=3, date=1, size=9)

`substitution`: a random letter substitution encoding new words each time (later repetitions
reveal only the letters seen before, so even a perfect memory stays partly at chance):

    code: river stone = hbxfh nqrpf

With `vocabulary="open"` the names come from open generators (data_modules/vocab.py) whose train, val and
test shares are disjoint: the function and argument names are made-up words (`ask lomi: dasu 2, kera 7`),
the substitution's words too, and its table is drawn from the split's share of the 26! tables. The test then
holds orders of names, and tables, that training never showed.
"""

from __future__ import annotations

import math
import string
from typing import Literal, Optional, get_args

import numpy as np

from ember.base import Example, MemoryTask, Split
from ember.data_modules.memory_task import ExampleBuilder, TextSource
from ember.data_modules.vocab import MAX_TRIES, Vocabulary, split_of
from ember.errors import EmberConfigError

WORDS = ("river stone cloud ember light green table water night house field bread music north paper quiet "
         "rapid smile train voice white world yield zebra brave crane dance eagle flame grape honey ivory "
         "jolly knife lemon maple noble ocean pearl queen robin sugar tiger unity vivid whale young amber "
         "blaze cider drift frost globe heart index juice koala lunar mango nylon orbit plume quilt").split()
LETTERS = string.ascii_lowercase.encode()


FUNCTIONS = "book send move find open plan sort ship call load".split()
ARGUMENTS = "city date size mode user item tag key time code room seat".split()
Rule = Literal["argument_order", "substitution"]
RULES = get_args(Rule)
VocabularyKind = Literal["closed", "open"]
SHORT = Vocabulary("short")  # open names: 2 syllables, at most 6 letters


class ProceduralPatterns(MemoryTask):
    """`repetitions` applications of one session-specific rule, `gap` windows apart.
    Groups: the repetition index ("rep1" .. "repK").

    Args:
        window: the working-memory window W of the model under test, in bytes.
        repetitions: applications of the rule per session (K).
        gap: distractor between repetitions, in multiples of W.
        rule: "argument_order" (a tool call's session-specific argument order) or "substitution"
            (a session-specific letter substitution).
        args: arguments per call (argument_order; orders: args!).
        words: words encoded per repetition (substitution).
        seq_len: tokens per example.
        distractor: text file of distractor text; null for the built-in corpus.
        vocabulary: "closed" (names and words from small built-in lists) or "open" (made-up names and words,
            and substitution tables, disjoint between train, val and test).
    """

    name = "patterns"

    def __init__(self, window: int = 64, repetitions: int = 4, gap: int = 2, rule: Rule = "argument_order",
                 args: int = 3, words: int = 3, seq_len: int = 768, distractor: Optional[str] = None,
                 vocabulary: VocabularyKind = "closed"):
        if window < 1 or repetitions < 1 or gap < 0 or words < 1:
            raise EmberConfigError(f"window={window}, repetitions={repetitions} and words={words} must be >= 1, "
                                   f"gap={gap} >= 0")
        if rule not in RULES:
            raise EmberConfigError(f"rule={rule!r}: use one of {', '.join(RULES)}")
        if not 2 <= args <= len(ARGUMENTS):
            raise EmberConfigError(f"args={args} must be in [2, {len(ARGUMENTS)}]")
        if vocabulary not in get_args(VocabularyKind):
            raise EmberConfigError(f"vocabulary={vocabulary!r}: use closed or open")
        # the longest repetition in bytes: "code: " + words + " = " + cipher + "\n", or
        # "ask " + fn + ": " + args x "name v" + "\n" + fn + "(" + args x "name=v" + ")\n"; a name or word has
        # at most `longest` bytes (closed: 5-byte words, 4-byte names; open: 6 bytes both)
        longest = 6 if vocabulary == "open" else 5 if rule == "substitution" else 4
        if rule == "substitution":
            per_rep = 8 + 2 * (longest + 1) * words
        else:
            per_rep = 6 + 2 * longest + 2 * (longest + 4) * args
        needed = repetitions * per_rep + (repetitions - 1) * (gap * window + 2)
        if needed > seq_len + 1:
            raise EmberConfigError(f"seq_len={seq_len} cannot hold {repetitions} repetitions {gap}xW apart: raise "
                                   f"seq_len to {needed - 1} or lower repetitions/gap")
        self.window, self.repetitions, self.gap, self.rule = window, repetitions, gap, rule
        self.args, self.words, self.seq_len, self.vocabulary = args, words, seq_len, vocabulary
        self.text = TextSource(distractor)
        self.group_names = [f"rep{k + 1}" for k in range(repetitions)]

    def chance(self) -> Optional[float]:
        """argument_order: the best order guessed without the session, 1/args!; substitution: not defined."""
        return 1.0 / math.factorial(self.args) if self.rule == "argument_order" else None

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Example:
        apply = self._substitution(rng, split) if self.rule == "substitution" else self._argument_order(rng, split)
        ex = ExampleBuilder()
        for k in range(self.repetitions):
            if k:
                ex.add(b"\n" + self.text.slice(rng, self.gap * self.window) + b"\n")
            prompt, answer = apply(rng)
            ex.add(prompt)
            ex.answer(answer, k)
            ex.add(b"\n")
        return ex.build(self.seq_len, filler=self.text.slice(rng, self.seq_len + 1))

    def _substitution(self, rng: np.random.Generator, split: Split):
        table = bytes.maketrans(LETTERS, self._table(rng, split))

        def apply(rng: np.random.Generator) -> tuple[bytes, bytes]:
            words = SHORT.draw(rng, split, self.words) if self.vocabulary == "open" else \
                rng.choice(WORDS, self.words, replace=False)
            plain = " ".join(str(w) for w in words).encode()
            return b"code: " + plain + b" = ", plain.translate(table)
        return apply

    def _table(self, rng: np.random.Generator, split: Split) -> bytes:
        """The session's substitution: any permutation of the letters (closed), or one of the split's share."""
        for _ in range(MAX_TRIES):
            table = bytes(rng.permutation(list(LETTERS)).tolist())
            if self.vocabulary == "closed" or split_of(table.decode()) == split:
                return table
        raise AssertionError("unreachable: a tenth of the tables lands in each split")

    def _argument_order(self, rng: np.random.Generator, split: Split):
        if self.vocabulary == "open":
            function, *order = SHORT.draw(rng, split, 1 + self.args)  # the order is the session's rule
        else:
            function = str(rng.choice(FUNCTIONS))
            order = [str(a) for a in rng.choice(ARGUMENTS, self.args, replace=False)]  # the session's rule

        def apply(rng: np.random.Generator) -> tuple[bytes, bytes]:
            values = {name: str(v) for name, v in zip(order, rng.integers(0, 10, self.args))}
            asked = ", ".join(f"{order[i]} {values[order[i]]}" for i in rng.permutation(self.args))
            call = ", ".join(f"{name}={values[name]}" for name in order) + ")"
            return f"ask {function}: {asked}\n{function}(".encode(), call.encode()
        return apply
