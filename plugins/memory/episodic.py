"""EpisodicStore: a bounded vector store per block (SPEC 3.2, seed 003).

Letters: b batch, n tokens, M items, k retrieved items, d width.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from ember.base import EpisodicMemory, Modulation, Neuromodulator
from ember.errors import EmberConfigError
from ember.ops.plasticity import em_read, merge_or_weakest
from ember.ops.slot_memory import SlotMemoryMixin


class EpisodicStore(SlotMemoryMixin, EpisodicMemory):
    """Episodic memory: M key/value/strength items, top-k retrieval, merge-or-overwrite writes.

    Read:   each token takes the top-k items by s_i cos(q_t, K_i) and attends over them:
            y_t = W_o sum_j s_j softmax_j(q_t . K_j / sqrt(d)) V_j  (items fixed within a period).
    Write (every `period` tokens, candidate (e_k, e_v) = the span's eligibility traces):
            j = the most similar live item if cos(K_j, e_k) > merge_threshold (merge), else the
            weakest item (overwrite); with w = one_hot(j):
            K <- normalize(K + g w (e_k - K)), V <- V + g w (e_v - V), s <- clamp(lam s + g eta w, 0, 1).
    Every item decays by lam at each boundary; capacity M is fixed whatever the stream length.
    The controller's tau is not used (the target is chosen, not sampled).

    Args:
        d_model: host width (passed by the backbone's factory).
        neuromodulator: controller factory, called with d_model (one per block).
        items: capacity M.
        top_k: items retrieved per token.
        period: plasticity period P in tokens.
        merge_threshold: cosine above which a candidate merges into an existing item.
        trace_decay: rho of the eligibility traces.
    """

    def __init__(self, d_model: int, neuromodulator: Callable[[int], Neuromodulator], items: int = 256,
                 top_k: int = 4, period: int = 64, merge_threshold: float = 0.9, trace_decay: float = 0.9):
        super().__init__()
        if not 1 <= top_k <= items:
            raise EmberConfigError(f"top_k={top_k} must be between 1 and items={items}")
        if not -1 <= merge_threshold <= 1:
            raise EmberConfigError(f"merge_threshold={merge_threshold} is a cosine: use a value in [-1, 1]")
        self._setup(d_model, items, neuromodulator, period, trace_decay)
        self.top_k, self.merge_threshold = top_k, merge_threshold

    def read(self, q: Tensor, K: Tensor, V: Tensor, s: Tensor) -> Tensor:
        return em_read(q, K, V, s, self.top_k)

    def select(self, K: Tensor, s: Tensor, k_e: Tensor, mod: Modulation) -> Tensor:
        return merge_or_weakest(K, s, k_e, self.merge_threshold)
