"""The batch EmberModel reads, typed: every data module's batch (a dict, or a bare token tensor from a text
loader) becomes one `Batch` at the model's door, so nothing downstream asks what kind of batch it holds.

Letters: b batch, n target positions (tokens has n + 1), samples: waveform samples.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import Tensor

from ember.errors import EmberDataError


@dataclass(frozen=True)
class Batch:
    """tokens (b, n + 1) int64, always. The rest are None unless the data module gives them:
    signal (b, samples) raw sensory input; loss_mask (b, n) bool, the scored targets (answer bytes);
    answer_id, group (b, n) int64: the answer each scored target belongs to and its report group;
    loss_weight (b, n) float: each target's weight in the loss where it is not loss_mask's (training on the
    context too)."""

    tokens: Tensor
    signal: Optional[Tensor] = None
    loss_mask: Optional[Tensor] = None
    answer_id: Optional[Tensor] = None
    group: Optional[Tensor] = None
    loss_weight: Optional[Tensor] = None

    @classmethod
    def of(cls, raw) -> Batch:
        """A data module's batch as a Batch: a token tensor, a dict with at least "tokens", or a Batch."""
        if isinstance(raw, Batch):
            return raw
        if isinstance(raw, Tensor):
            return cls(tokens=raw)
        if isinstance(raw, dict) and "tokens" in raw:
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in raw.items() if k in known})
        got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise EmberDataError(f"a batch for EmberModel is a token tensor or a dict with 'tokens'; got {got}. "
                             "Pair EmberModel with a text or memory-task data module.")

    @property
    def inputs(self) -> Tensor:
        """(b, n) the tokens the model reads."""
        return self.tokens[:, :-1]

    @property
    def targets(self) -> Tensor:
        """(b, n) the tokens it predicts."""
        return self.tokens[:, 1:]

    def weights(self) -> Tensor:
        """(b, n) float weight of each target in the loss: loss_weight, else loss_mask, else 1 everywhere."""
        if self.loss_weight is not None:
            return self.loss_weight.float()
        if self.loss_mask is not None:
            return self.loss_mask.float()
        return self.targets.new_ones(self.targets.shape, dtype=torch.float32)

    @property
    def scores_answers(self) -> bool:
        """True for a benchmark batch whose answers are scored (accuracy per answer and per group)."""
        return self.answer_id is not None and self.loss_mask is not None and self.group is not None
