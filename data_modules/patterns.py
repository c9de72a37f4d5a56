"""Procedural patterns (PM benchmark, SPEC 4): a session-specific rule, applied again and again
with repetitions further apart than the working-memory window; error on the k-th repetition.

The rule is a random letter substitution, fixed for the session; each repetition encodes new
words, so what carries over is the rule, not the string:

    code: river stone = hbxfh nqrpf
    <distractor: gap x W bytes>
    code: cloud ember = ...
"""

from __future__ import annotations

import string
from typing import Optional

import numpy as np

from ember.data_modules.memory_task import Example, ExampleBuilder, MemoryTask, TextSource
from ember.errors import EmberConfigError

WORDS = ("river stone cloud ember light green table water night house field bread music north paper quiet "
         "rapid smile train voice white world yield zebra brave crane dance eagle flame grape honey ivory "
         "jolly knife lemon maple noble ocean pearl queen robin sugar tiger unity vivid whale young amber "
         "blaze cider drift frost globe heart index juice koala lunar mango nylon orbit plume quilt").split()
LETTERS = string.ascii_lowercase.encode()


class ProceduralPatterns(MemoryTask):
    """`repetitions` applications of one random letter substitution, `gap` windows apart.
    Groups: the repetition index ("rep1" .. "repK").

    Args:
        window: the working-memory window W of the model under test, in bytes.
        repetitions: applications of the rule per session (K).
        gap: distractor between repetitions, in multiples of W.
        words: words encoded per repetition.
        seq_len: tokens per example.
        distractor: text file of distractor text; null for the built-in corpus.
    """

    name = "patterns"

    def __init__(self, window: int = 64, repetitions: int = 4, gap: int = 2, words: int = 3, seq_len: int = 768,
                 distractor: Optional[str] = None):
        if window < 1 or repetitions < 1 or gap < 0 or words < 1:
            raise EmberConfigError(f"window={window}, repetitions={repetitions} and words={words} must be >= 1, "
                                   f"gap={gap} >= 0")
        needed = repetitions * (8 + 12 * words) + (repetitions - 1) * gap * window
        if needed > seq_len + 1:
            raise EmberConfigError(f"seq_len={seq_len} cannot hold {repetitions} repetitions {gap}xW apart: raise "
                                   f"seq_len to {needed} or lower repetitions/gap")
        self.window, self.repetitions, self.gap, self.words, self.seq_len = window, repetitions, gap, words, seq_len
        self.text = TextSource(distractor)
        self.group_names = [f"rep{k + 1}" for k in range(repetitions)]

    def sample(self, rng: np.random.Generator) -> Example:
        table = bytes.maketrans(LETTERS, bytes(rng.permutation(list(LETTERS)).tolist()))
        ex = ExampleBuilder()
        for k in range(self.repetitions):
            if k:
                ex.add(b"\n" + self.text.slice(rng, self.gap * self.window) + b"\n")
            plain = " ".join(str(w) for w in rng.choice(WORDS, self.words, replace=False)).encode()
            ex.add(b"code: " + plain + b" = ")
            ex.answer(plain.translate(table), k)
            ex.add(b"\n")
        return ex.build(self.seq_len, filler=self.text.slice(rng, self.seq_len + 1))
