"""ReadoutAlignment: sleep in one closed-form step, writing what the memories read into the feed-forward weights
that follow them (SPEC 3.7, seed 001 1.5's alignment loss ||FFN(h_i) - v_i||^2).

Letters: t replayed tokens kept, g general-text tokens, f feed-forward width, d model width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ember.base import Consolidator
from ember.errors import EmberConfigError
from ember.ops.memory_read import MemoryReadLayer
from ember.sleep import Episode, bits_per_byte, check_episodes, kl_to_teacher, student_logits, teacher_logits


def ridge_update(A: Tensor, R: Tensor, G: Tensor, general_weight: float, ridge: float) -> Tensor:
    """The dW (d, f) that minimises
        sum_t ||dW a_t - r_t||^2 + general_weight * sum_g ||dW a_g||^2 + ridge * ||dW||_F^2
    for the rows a_t of A (t, f) with targets r_t of R (t, d) and the rows a_g of G (g, f):
        dW = R^T A (A^T A + general_weight G^T G + ridge I)^-1."""
    f = A.shape[1]
    gram = A.T @ A + general_weight * (G.T @ G) + ridge * torch.eye(f, dtype=A.dtype, device=A.device)
    return torch.linalg.solve(gram, A.T @ R).T  # gram is symmetric: (gram^-1 A^T R)^T = R^T A gram^-1


class ReadoutAlignment(Consolidator):
    """Sleep in one least-squares step: the memories' read-outs written into the feed-forward weights after them.

    No gradient descent: a cheap ablation of ReplayDistillation.
    Each memory read (an EM's, a PM's: a `MemoryReadLayer`) adds r_t to the residual stream; with the memories off
    it adds nothing. The next feed-forward output projection W (the `down` of the SwiGLU that follows the read, in
    the model's module order) sees a_t, its input in the memory-OFF model. For each such pair the sleep keeps the
    episodes' tokens whose read-out is among the `keep` share with the largest ||r_t|| (what the memory was sure
    of) and sets W <- W + dW with dW from `ridge_update`: the memory-OFF model then adds r_t itself where the
    memory did, while general-text tokens a_g (weight `general_weight`) and the ridge keep dW small elsewhere. The
    residual r_t is placed after the layer's attention rather than before it: an approximation the KL metrics
    report on.

    Args:
        keep: share of the replayed tokens (by read-out norm) whose read-outs are written.
        ridge: the ridge term (a pull to the pre-sleep weights).
        general_weight: weight of keeping the general text's outputs unchanged.
    """

    def __init__(self, keep: float = 0.25, ridge: float = 1.0, general_weight: float = 1.0):
        super().__init__()
        if not 0 < keep <= 1 or not ridge > 0 or not general_weight >= 0:
            raise EmberConfigError(f"ReadoutAlignment: keep={keep} must be in (0, 1], ridge={ridge} > 0, "
                                   f"general_weight={general_weight} >= 0")
        self.keep, self.ridge, self.general_weight = keep, ridge, general_weight

    def consolidate(self, model, episodes: list[Episode], general: list[Tensor], seed: int = 0) -> dict[str, float]:
        check_episodes(episodes)
        pairs = _read_then_down(model)
        if not pairs:
            raise EmberConfigError("ReadoutAlignment writes memory read-outs into the feed-forward layer after each "
                                   "read, and this model has no memory followed by one: use ReplayDistillation")
        with torch.no_grad():
            # one teacher pass gives the targets and the read-outs, one student pass the KL before and the inputs
            reads, _, teacher = _capture(model, episodes, [r for r, _ in pairs], [], memories=True)
            _, inputs, student = _capture(model, episodes, [], [d for _, d in pairs], memories=False)
            targets = [(ep.tokens, p) for ep, p in zip(episodes, teacher)]
            before = sum(kl_to_teacher(p, q).item() for p, q in zip(teacher, student)) / len(targets)
            bpb_before = bits_per_byte(model, general, memories=True) if general else float("nan")
            kept_general = _capture(model, [Episode(t) for t in general], [], [d for _, d in pairs], False)[1]
            moved = 0.0
            for i, (_, down) in enumerate(pairs):
                R, A = reads[i], inputs[i]
                top = R.norm(dim=-1).topk(max(1, int(self.keep * R.shape[0]))).indices
                G = kept_general[i] if general else A.new_zeros(0, A.shape[1])
                delta = ridge_update(A[top], R[top], G, self.general_weight, self.ridge)
                down.weight += delta.to(down.weight.dtype)
                moved += delta.norm().item() ** 2
            after = self._kl(model, targets)
            bpb_after = bits_per_byte(model, general, memories=True) if general else float("nan")
        return {"kl_before": before, "kl_after": after, "general_bpb_before": bpb_before,
                "general_bpb_after": bpb_after, "delta_norm": moved**0.5, "anchor": 0.0}

    @staticmethod
    def _kl(model, targets) -> float:
        return sum(kl_to_teacher(p, student_logits(model, t)).item() for t, p in targets) / len(targets)


def _read_then_down(model: nn.Module) -> list[tuple[MemoryReadLayer, nn.Linear]]:
    """(memory read, the next feed-forward output projection after it) in module order."""
    pairs, waiting = [], []
    for name, module in model.named_modules():
        if isinstance(module, MemoryReadLayer):
            waiting.append(module)
        elif name.endswith("ffn.down") and isinstance(module, nn.Linear) and waiting:
            pairs += [(read, module) for read in waiting]
            waiting = []
    return pairs


def _capture(model, episodes: Sequence[Episode], reads: list[nn.Module], downs: list[nn.Linear],
             memories: bool) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Run the episodes (memories on from their states, or off) and collect, over all their tokens, each read
    layer's read-out (tokens, d) and each down projection's input (tokens, f); also each episode's logits (n - 1, v)."""
    got_r, got_a = [[] for _ in reads], [[] for _ in downs]
    hooks = [r.register_forward_hook(lambda m, args, out, i=i: got_r[i].append((out[0] - args[0])[0]))
             for i, r in enumerate(reads)]
    hooks += [d.register_forward_pre_hook(lambda m, args, i=i: got_a[i].append(args[0][0]))
              for i, d in enumerate(downs)]
    try:
        logits = [teacher_logits(model, ep) if memories else student_logits(model, ep.tokens) for ep in episodes]
    finally:
        for h in hooks:
            h.remove()
    cat = lambda parts: [torch.cat(p, 0).float() for p in parts]  # noqa: E731
    return cat(got_r), cat(got_a), logits
