"""Active perception in the composite (SPEC 3.6, seed 002: "Need more sensory detail? -> request more from the
L-module ... iterate 2-4 times").

Round r asks the sensory slot for the signal's window [r w, (r + 1) w) (w = view_seconds; `SensoryEncoder.sense`),
and the reasoning core refines its answer y and latent z from round r - 1's with the new view as x. After each
round the core's more-sensing flag says whether another would help; an example stops after the first round whose
flag is below sense_threshold (0.5), or after max_rounds. The flag of round r is trained towards "round r + 1's
answer loss is lower by more than round_cost" (binary cross-entropy, targets detached).

Letters: R rounds, b batch, n targets, p prefix tokens, d width, k modulation signals.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ember.base import ReasoningCore, SensoryEncoder, SensoryRequest
from ember.errors import EmberConfigError


class View(NamedTuple):
    """One round of active perception: what the backbone would read after it."""

    prefix: Tensor  # (b, p, d) [y ; e], or e without a reasoning core
    modulation: Tensor  # (b, k) the round's sensory modulation
    more: Optional[Tensor]  # (b,) the reasoning core's more-sensing probability (None without a core)
    final: bool = True  # the round's last supervision step (deep supervision scores the earlier ones too)


def check_rounds(max_rounds: int, view_seconds: Optional[float], round_cost: float, sense_threshold: float, sensory,
                 reasoning):
    """Refuse an active-perception setting that cannot run, naming the fix."""
    if not 0 <= sense_threshold <= 1:
        raise EmberConfigError(f"sense_threshold={sense_threshold} is a probability: use a value in [0, 1] (0: every "
                               "round, 1: the first only)")
    if max_rounds < 1:
        raise EmberConfigError(f"max_rounds={max_rounds} counts rounds of sensing: use 1 (one view) or more")
    if view_seconds is not None and not 0 < view_seconds < math.inf:
        raise EmberConfigError(f"view_seconds={view_seconds} must be a length in seconds > 0, or null (whole signal)")
    if not 0 <= round_cost < math.inf:
        raise EmberConfigError(f"round_cost={round_cost} must be finite and >= 0 (nats a round must save)")
    if max_rounds > 1 and (sensory is None or reasoning is None or view_seconds is None):
        raise EmberConfigError(f"max_rounds={max_rounds} needs a sensory slot, a reasoning core (its more-sensing flag "
                               f"decides each round) and view_seconds (each round's window); this model has sensory="
                               f"{type(sensory).__name__ if sensory else None}, reasoning="
                               f"{type(reasoning).__name__ if reasoning else None}, view_seconds={view_seconds}: fill "
                               "them, or set max_rounds 1")


def sense_rounds(sensory: SensoryEncoder, reasoning: Optional[ReasoningCore], signal: Tensor, max_rounds: int,
                 view_seconds: Optional[float], deep: bool = False) -> list[View]:
    """Every round: round r's view of `signal` (b, t) through `sensory`, refined by `reasoning` from round r - 1's y
    and z. view_seconds None: one view of the whole signal. deep: a view after every supervision step of the core
    (`ReasoningCore.steps`), the round's last one `final`; else the final ones only."""
    views, thought = [], None
    for r in range(max_rounds):
        if view_seconds is None:
            sensed = sensory(signal)
        else:
            sensed = sensory.sense(signal, SensoryRequest(r * view_seconds, view_seconds))
        if reasoning is None:
            views.append(View(sensed.tokens, sensed.modulation, None))
            continue
        outputs = list(reasoning.steps(sensed.tokens, thought)) if deep else [reasoning(sensed.tokens, thought)]
        for k, thought in enumerate(outputs):
            views.append(View(torch.cat([thought.answer, sensed.tokens], dim=1), sensed.modulation,
                              thought.more_sensing, k == len(outputs) - 1))
    return views


def stop_round(views: list[View], threshold: float = 0.5) -> Tensor:
    """(b,) int64: the round each example stops after, the first whose more-sensing flag is below `threshold` (the
    last round where none is). Rounds are the `final` views."""
    views = [v for v in views if v.final]
    if len(views) == 1:
        return torch.zeros(views[0].prefix.shape[0], dtype=torch.long, device=views[0].prefix.device)
    stops = torch.stack([v.more < threshold for v in views[:-1]] + [torch.ones_like(views[-1].more, dtype=torch.bool)])
    return stops.float().argmax(0)  # (R, b) -> the first True


def rounds_loss(per_token: Tensor, weight: Tensor, views: list[View], round_cost: float, training: bool,
                threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """The loss of a batch seen after every view, and where each example stops.

    per_token: (V, b, n) weighted next-byte losses (nats) after each view's prefix; weight: (b, n) the targets'
    weights. Training: the mean over views (each round's answer, and with deep supervision each step's, is taught)
    plus the flags' binary cross-entropy towards "the next round's mean loss per target is lower by more than
    round_cost". Evaluation: each example's loss at the round it stops after (`stop_round` at `threshold`). Returns
    the loss () and the stop rounds (b,).
    """
    v, b, _ = per_token.shape
    stop = stop_round(views, threshold)
    finals = torch.tensor([i for i, view in enumerate(views) if view.final], device=per_token.device)
    total = weight.sum().clamp_min(1.0)
    if not training:
        return per_token[finals[stop], torch.arange(b)].sum() / total, stop
    loss = per_token.sum() / (v * total)
    if len(finals) == 1:
        return loss, stop
    per_example = per_token[finals].sum(-1) / weight.sum(-1).clamp_min(1.0)  # (R, b)
    more = torch.stack([view.more for view in views if view.final][:-1]).float()  # (R - 1, b)
    helped = (per_example[1:] + round_cost < per_example[:-1]).float().detach()
    return loss + F.binary_cross_entropy(more.clamp(1e-6, 1 - 1e-6), helped), stop
