"""MQAR and forgetting-MQAR, as Zoology defines them (Arora, Eyuboglu et al. 2023, "Zoology:
Measuring and improving recall in efficient language models"; HazyResearch/zoology).

MQAR: key-value pairs at the start (keys from the first half of the vocabulary, values from the
second, no key twice), then each key queried once at a gap drawn from a power law
p(g) ~ power_a * g^(power_a - 1) over the remaining space (queries at even offsets), every other
position filled with random tokens. The answer is the query's value, predicted at the query.
Forgetting-MQAR: `num_updates` of the keys are re-bound to a new value after the first pass; a
query must return the latest value.

One difference from Zoology's tensors: there the input after a query is filler and the value
appears only as a label; here the value is also the next input token (targets are the inputs
shifted by one). It comes after the prediction, so the task is the same.

Groups: "near" (the key's latest binding within `window` tokens of the query) and "far".
"""

from __future__ import annotations

import numpy as np

from ember.base import Example, MemoryTask, Split
from ember.errors import EmberConfigError


class MQAR(MemoryTask):
    """Multi-query associative recall (Zoology). Groups: "near"/"far" than `window` tokens.

    Args:
        vocab_size: token vocabulary (keys below vocab_size // 2, values above); the backbone's
            vocab_size must be at least this.
        seq_len: tokens per example (input_seq_len).
        num_kv_pairs: key-value pairs per example.
        power_a: power-law exponent of the query gaps (Zoology's default 0.01).
        random_non_queries: fill unused positions with random tokens (else 0).
        window: the working-memory window W of the model under test, for the near/far split.
    """

    name = "mqar"

    def __init__(self, vocab_size: int = 8192, seq_len: int = 512, num_kv_pairs: int = 64, power_a: float = 0.01,
                 random_non_queries: bool = True, window: int = 64):
        self.vocab_size, self.seq_len, self.num_kv_pairs = vocab_size, seq_len, num_kv_pairs
        self.power_a, self.random_non_queries, self.window = power_a, random_non_queries, window
        self.group_names = ["near", "far"]
        self._check(self.context_size)
        space = (seq_len - self.context_size) // 2
        p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
        self.gap_p = p / p.sum()

    @property
    def context_size(self) -> int:
        return 2 * self.num_kv_pairs

    def _check(self, context: int):
        if self.seq_len % 2 or self.num_kv_pairs < 1 or context + 2 * self.num_kv_pairs > self.seq_len:
            raise EmberConfigError(f"seq_len={self.seq_len} must be even and hold {context} context tokens plus "
                                   f"{self.num_kv_pairs} queries at even gaps: raise seq_len or lower num_kv_pairs")
        if self.num_kv_pairs >= self.vocab_size // 2:
            raise EmberConfigError(f"num_kv_pairs={self.num_kv_pairs} needs vocab_size > "
                                   f"{2 * (self.num_kv_pairs + 1)} (got {self.vocab_size})")

    def chance(self) -> float:
        return 1.0 / (self.vocab_size - self.vocab_size // 2)

    def bindings(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Context tokens, the keys, their final values, and the context position of each key's last binding."""
        half = self.vocab_size // 2
        keys = rng.choice(np.arange(1, half), self.num_kv_pairs, replace=False)
        values = rng.choice(np.arange(half, self.vocab_size), self.num_kv_pairs, replace=False)
        context = np.empty(2 * self.num_kv_pairs, dtype=np.int64)
        context[0::2], context[1::2] = keys, values
        return context, keys, values, np.arange(self.num_kv_pairs) * 2

    def sample(self, rng: np.random.Generator, split: Split = "train") -> Example:
        context, keys, values, bound_at = self.bindings(rng)
        c = len(context)
        gaps = rng.choice(len(self.gap_p), self.num_kv_pairs, replace=False, p=self.gap_p)
        tokens = np.zeros(self.seq_len + 1, dtype=np.int64)
        tokens[:c] = context
        query_pos = c + 2 * gaps  # position of each query key
        tokens[query_pos], tokens[query_pos + 1] = keys, values
        if self.random_non_queries:
            fill = tokens == 0
            tokens[fill] = rng.integers(0, self.vocab_size, int(fill.sum()))
        n = self.seq_len
        mask, answer_id, group = np.zeros(n, bool), np.full(n, -1), np.full(n, -1)
        mask[query_pos], answer_id[query_pos] = True, np.arange(self.num_kv_pairs)
        group[query_pos] = (query_pos - bound_at > self.window).astype(np.int64)
        return Example(tokens, mask, answer_id, group)


class ForgettingMQAR(MQAR):
    """MQAR where `num_updates` keys are re-bound after the first pass; queries ask for the latest value.

    Args:
        vocab_size, seq_len, num_kv_pairs, power_a, random_non_queries, window: as MQAR.
        num_updates: keys re-bound to a new value (at most num_kv_pairs).
    """

    name = "forgetting_mqar"

    def __init__(self, vocab_size: int = 8192, seq_len: int = 512, num_kv_pairs: int = 64, num_updates: int = 16,
                 power_a: float = 0.01, random_non_queries: bool = True, window: int = 64):
        if not 0 <= num_updates <= num_kv_pairs:
            raise EmberConfigError(f"num_updates={num_updates} must be between 0 and num_kv_pairs={num_kv_pairs}")
        self.num_updates = num_updates
        super().__init__(vocab_size, seq_len, num_kv_pairs, power_a, random_non_queries, window)

    @property
    def context_size(self) -> int:
        return 2 * (self.num_kv_pairs + self.num_updates)

    def bindings(self, rng: np.random.Generator):
        half = self.vocab_size // 2
        first, keys, values, bound_at = super().bindings(rng)
        updated = rng.choice(self.num_kv_pairs, self.num_updates, replace=False)
        final = values.copy()
        for i in updated:  # a new value, different from the old one
            new = int(rng.integers(half, self.vocab_size - 1))
            final[i] = new + (new >= values[i])
        tail = np.empty(2 * self.num_updates, dtype=np.int64)
        tail[0::2], tail[1::2] = keys[updated], final[updated]
        bound = bound_at.copy()
        bound[updated] = len(first) + 2 * np.arange(self.num_updates)
        return np.concatenate([first, tail]), keys, final, bound
