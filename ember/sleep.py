"""What every consolidator shares (SPEC 3.7): episodes, the slow weights a sleep may change, the teacher and the
student, and the KL between them.

A sleep distils the memory-ON model (the teacher: the slow weights reading with their fast memories, from the
memory state an episode was lived with) into the memory-OFF model (the student: the same slow weights alone).
The memories' own weights (their projections, controllers and rules) are never changed by a sleep: they are how
the fast system reads and writes, not what it learned. Letters: n tokens, v vocabulary.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.errors import EmberConfigError, EmberDataError
from ember.ops.memory_read import MemoryReadLayer
from ember.ops.slot_memory import SlotMemory, memories_off
from ember.state import StateBase

LN2 = math.log(2.0)


class Episode(NamedTuple):
    """A lived session to replay: its bytes (n,) int64 and the memory state it started from (None: empty memories,
    the teacher writes them again as it reads, as it did when the session was lived)."""

    tokens: Tensor
    state: Optional[StateBase] = None


def check_episodes(episodes: Sequence[Episode], what: str = "episodes") -> None:
    if not episodes:
        raise EmberDataError(f"no {what} to replay: a sleep needs at least one lived session (give the sessions' "
                             "text, or let the callback's day collect some before it sleeps)")
    short = [i for i, ep in enumerate(episodes) if ep.tokens.dim() != 1 or ep.tokens.numel() < 2]
    if short:
        raise EmberDataError(f"{what} {short[:5]} hold fewer than 2 bytes (or are not 1-d byte sequences): each "
                             "needs at least one byte to predict")


def owned_parameters(model: nn.Module, patterns: Sequence[str]) -> dict[str, nn.Parameter]:
    """The slow weights a sleep may change: parameters whose name matches one of the fnmatch `patterns`, less those
    of a plastic memory (PM, EM) with the layer that reads it, and of a consolidator. Raises when nothing matches."""
    machinery = {id(p) for module in model.modules() if isinstance(module, (SlotMemory, MemoryReadLayer))
                 for p in module.parameters()}  # a memory, and the layer that reads it (its input norm)
    consolidator = getattr(model, "consolidator", None)
    if consolidator is not None:
        machinery |= {id(p) for p in consolidator.parameters()}
    owned = {name: p for name, p in model.named_parameters()
             if any(fnmatch.fnmatchcase(name, pat) for pat in patterns) and id(p) not in machinery}
    if not owned:
        raise EmberConfigError(f"owns={list(patterns)} matches no slow weight of this model (the memories' own "
                               "weights never count): use patterns of its parameter names, e.g. 'backbone.*'")
    return owned


@contextmanager
def only_training(params: dict[str, nn.Parameter], model: nn.Module) -> Iterator[None]:
    """Inside: gradients for `params` only, and the model in eval mode (no dropout); both restored after."""
    before = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        model.eval()
        yield
    finally:
        for p, flag in before.items():
            p.requires_grad_(flag)
        model.train(was_training)


def teacher_logits(model, episode: Episode) -> Tensor:
    """The teacher's next-byte logits (n - 1, v) for an episode: memories ON, from the episode's memory state."""
    tokens = episode.tokens.to(_device(model))
    with torch.no_grad():
        return model.backbone(tokens[None, :-1], episode.state).logits[0].float()


def student_logits(model, tokens: Tensor) -> Tensor:
    """The student's next-byte logits (n - 1, v): the same slow weights with every memory off (gradients flow)."""
    with memories_off(model):
        return model.backbone(tokens.to(_device(model))[None, :-1]).logits[0].float()


def token_kl(teacher: Tensor, student: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(p_teacher || p_student) per token (n,), both softened by `temperature` (logits (n, v) each), times
    temperature^2 so the gradient's scale does not depend on it (Hinton et al. 2015):
        T^2 sum_j p_tj (log p_tj - log q_tj),  p = softmax(teacher / T), q = softmax(student / T)."""
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    log_q = F.log_softmax(student / temperature, dim=-1)
    return temperature**2 * (log_p.exp() * (log_p - log_q)).sum(-1)


def kl_to_teacher(teacher: Tensor, student: Tensor, temperature: float = 1.0, mask: Optional[Tensor] = None) -> Tensor:
    """The mean of `token_kl` over the tokens, or over those where `mask` (n,) bool is set."""
    kl = token_kl(teacher, student, temperature)
    return kl.mean() if mask is None else kl[mask].sum() / mask.sum().clamp_min(1)


def focus_mask(teacher: Tensor, student: Tensor, share: float, temperature: float = 1.0) -> Optional[Tensor]:
    """(n,) bool: the `share` of the tokens where the teacher and the student disagree most (KL), at least one;
    None for share 1 (every token). Where the memories change nothing the two agree already."""
    if share >= 1:
        return None
    kl = token_kl(teacher, student, temperature)
    keep = max(1, int(round(share * kl.numel())))
    mask = torch.zeros_like(kl, dtype=torch.bool)
    mask[kl.topk(keep).indices] = True
    return mask


def bits_per_byte(model, sequences: Sequence[Tensor], memories: bool) -> float:
    """Mean next-byte loss in bits over `sequences` (each (n,)), with the memories on (fresh state) or off."""
    total, count = 0.0, 0
    with torch.no_grad():
        for tokens in sequences:
            tokens = tokens.to(_device(model))
            if memories:
                logits = model.backbone(tokens[None, :-1]).logits[0].float()
            else:
                logits = student_logits(model, tokens)
            total += F.cross_entropy(logits, tokens[1:], reduction="sum").item()
            count += tokens.numel() - 1
    return total / max(count, 1) / LN2


def general_sequences(path: str, count: int, length: int, seed: int) -> list[Tensor]:
    """`count` byte sequences of `length` + 1 bytes from the text file at `path`, at offsets drawn with `seed`."""
    file = Path(path)
    if not file.is_file():
        raise EmberDataError(f"general text {path} is not a file: give a text file (a plain-text corpus) or leave it "
                             "out")
    data = torch.frombuffer(bytearray(file.read_bytes()), dtype=torch.uint8).long()
    if data.numel() < length + 1:
        raise EmberDataError(f"general text {path} holds {data.numel()} bytes, fewer than one sequence of "
                             f"{length + 1}: give a longer file or a smaller general_length")
    starts = torch.randint(data.numel() - length, (count,), generator=torch.Generator().manual_seed(seed))
    return [data[s : s + length + 1] for s in starts.tolist()]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
