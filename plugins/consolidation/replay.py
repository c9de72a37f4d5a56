"""ReplayDistillation: sleep by replaying lived sessions, the memory-ON model teaching the memory-OFF one (SPEC 3.7,
seed 001 1.5).

Letters: n tokens, v vocabulary, B sequences per sleep step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor

from ember.base import Anchor, Consolidator
from ember.errors import EmberConfigError
from ember.ops.slot_memory import memories_off
from ember.sleep import (
    Episode,
    bits_per_byte,
    check_episodes,
    focus_mask,
    kl_to_teacher,
    only_training,
    owned_parameters,
    student_logits,
    teacher_logits,
)


class ReplayDistillation(Consolidator):
    """Replays lived sessions through the model twice and moves what the memories added into the slow weights.

    The teacher is the model reading an episode with its memories ON, from the memory state the episode started
    from; the student is the same slow weights with every memory OFF. The teacher's next-byte distributions p are
    fixed before the first step; so are, for general text, the pre-sleep student's distributions p0 (what the slow
    weights did before, to keep). Each of `steps` Adam steps draws B = `batch_size` sequences, each a general-text
    one with probability r = `general_ratio` (when there is general text) and an episode otherwise, and lowers

        L = 1/B sum_b [KL(p_b || q_b) + mu KL(p_b || r_b)] + anchor.penalty(theta),

    q_b the student's distributions on sequence b, KL the mean over its tokens (temperature T:
    ember.sleep.kl_to_teacher), theta the owned slow weights (`owns`; a memory's own weights never). r_b are the
    sleeping model's distributions with its memories ON (from the episode's memory state; for general text, the
    term is 0): the slow weights also feed and read the memories, and without this term (mu = `memory_weight` 0)
    a sleep that teaches the student the facts unlearns how the memories are used (BENCHMARKS 11: after one sleep
    the memories-ON accuracy on the next day's sessions fell from 0.35 to 0). With
    `focus` f < 1 an episode's KL is the mean over the share f of its tokens where teacher and student disagreed
    most before the sleep (ember.sleep.focus_mask): what the memories added, not the text both already predict.
    Without an anchor and with r = 0 this is plain fine-tuning on the replay, the naive baseline.

    Args:
        anchor: the penalty that keeps general competence, chosen by class (L2SP, EWC); null: none.
        steps: optimizer steps per sleep.
        lr: Adam learning rate of the sleep (its own optimizer, fresh each sleep).
        batch_size: sequences per step (B).
        general_ratio: the share r of general-text sequences in the replay (0: episodes only).
        temperature: softening T of both distributions.
        owns: fnmatch patterns of the slow weights the sleep may change (e.g. "backbone.stack.layers.*").
        focus: share f of each episode's tokens the KL reads (1: all).
        memory_weight: weight mu of keeping the memories-ON model as it was (0: off; costs a memories-ON pass).
    """

    def __init__(self, anchor: Optional[Anchor] = None, steps: int = 100, lr: float = 1e-3, batch_size: int = 4,
                 general_ratio: float = 0.25, temperature: float = 1.0, owns: Sequence[str] = ("backbone.*",),
                 focus: float = 1.0, memory_weight: float = 1.0):
        super().__init__()
        if steps < 0 or batch_size < 1 or not lr > 0 or not temperature > 0 or not 0 <= general_ratio <= 1 or \
                not 0 < focus <= 1 or not memory_weight >= 0:
            raise EmberConfigError(f"ReplayDistillation: steps={steps} must be >= 0, batch_size={batch_size} >= 1, "
                                   f"lr={lr} and temperature={temperature} > 0, general_ratio={general_ratio} in "
                                   f"[0, 1], focus={focus} in (0, 1], memory_weight={memory_weight} >= 0")
        self.anchor, self.steps, self.lr, self.batch_size = anchor, steps, lr, batch_size
        self.general_ratio, self.temperature, self.owns, self.focus = general_ratio, temperature, list(owns), focus
        self.memory_weight = memory_weight
        self.curve: list[float] = []  # the last sleep's loss per step (the callback plots it)

    def consolidate(self, model, episodes: list[Episode], general: list[Tensor], seed: int = 0) -> dict[str, float]:
        check_episodes(episodes)
        params = owned_parameters(model, self.owns)
        with only_training(params, model), torch.enable_grad():
            with torch.no_grad():
                targets = [(ep, p, self._focus(model, ep, p)) for ep, p in ((ep, teacher_logits(model, ep))
                                                                          for ep in episodes)]
                kept = [(Episode(t), student_logits(model, t), None) for t in general]
            before = self._report(model, targets, general)
            if self.anchor is not None:
                self.anchor.prepare(model, params, list(general))
            self.curve = self._train(model, params, targets, kept, seed)
            after = self._report(model, targets, general)
        out = {f"{k}_before": v for k, v in before.items()} | {f"{k}_after": v for k, v in after.items()}
        out["anchor"] = self._anchor_value(params)
        out["loss_last"] = self.curve[-1] if self.curve else float("nan")
        return out

    def _focus(self, model, episode: Episode, teacher: Tensor) -> Optional[Tensor]:
        """The episode's focus mask (None with focus 1: no student pass is needed for that)."""
        if self.focus >= 1:
            return None
        return focus_mask(teacher, student_logits(model, episode.tokens), self.focus, self.temperature)

    def _train(self, model, params, targets: list, kept: list, seed: int) -> list[float]:
        """`steps` Adam steps on the replay; returns the loss of each."""
        opt = torch.optim.Adam(params.values(), lr=self.lr)
        rng = torch.Generator().manual_seed(seed)
        share = self.general_ratio if kept else 0.0
        curve = []
        for _ in range(self.steps):
            drawn = []
            for _ in range(self.batch_size):
                general = torch.rand((), generator=rng).item() < share
                pool = kept if general else targets
                drawn.append((*pool[int(torch.randint(len(pool), (), generator=rng))], general))
            loss = self._replay_loss(model, drawn) / self.batch_size
            if self.anchor is not None:
                loss = loss + self.anchor.penalty(params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            curve.append(loss.item())
        return curve

    def _replay_loss(self, model, drawn: list) -> Tensor:
        """The sum over the drawn (episode, p, mask, general) of KL(p || q), plus mu KL(p || r) for the episodes.
        Sequences of one length run as one batch; a memories-ON batch holds the episodes that start from empty
        memories, and an episode with a memory state of its own runs alone."""
        total = torch.zeros(())
        for group in _by_length(drawn):
            tokens = torch.stack([ep.tokens for ep, *_ in group]).to(group[0][1].device)
            with memories_off(model):
                off = model.backbone(tokens[:, :-1]).logits.float()
            total = total + sum(kl_to_teacher(p, off[i], self.temperature, mask)
                                for i, (_, p, mask, _) in enumerate(group))
            episodes = [item for item in group if not item[3]] if self.memory_weight > 0 else []
            fresh = [item for item in episodes if item[0].state is None]
            if fresh:
                on = model.backbone(torch.stack([ep.tokens for ep, *_ in fresh])[:, :-1]).logits.float()
                total = total + self.memory_weight * sum(kl_to_teacher(p, on[i], self.temperature)
                                                         for i, (_, p, _, _) in enumerate(fresh))
            for ep, p, _, _ in (item for item in episodes if item[0].state is not None):
                on = model.backbone(ep.tokens[None, :-1], ep.state).logits[0].float()
                total = total + self.memory_weight * kl_to_teacher(p, on, self.temperature)
        return total

    def _report(self, model, targets: list, general: list[Tensor]) -> dict[str, float]:
        """The mean KL(teacher || student) over the episodes, and the general text's bits/byte with the memories on
        and off (NaN without general text)."""
        with torch.no_grad():
            kl = sum(kl_to_teacher(p, student_logits(model, ep.tokens), self.temperature).item()
                     for ep, p, _ in targets)
            kl_on = sum(kl_to_teacher(p, teacher_logits(model, ep), self.temperature).item() for ep, p, _ in targets)
            report = {"kl": kl / len(targets), "kl_on": kl_on / len(targets)}
            nan = float("nan")
            report["general_bpb"] = bits_per_byte(model, general, memories=True) if general else nan
            report["general_bpb_off"] = bits_per_byte(model, general, memories=False) if general else nan
        return report

    def _anchor_value(self, params) -> float:
        if self.anchor is None:
            return 0.0
        with torch.no_grad():
            return float(self.anchor.penalty(params))


def _by_length(drawn: list) -> list[list]:
    """The drawn items grouped by sequence length, in the order each length first appears."""
    groups: dict[int, list] = {}
    for item in drawn:
        groups.setdefault(item[0].tokens.numel(), []).append(item)
    return list(groups.values())
