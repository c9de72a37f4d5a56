"""The optimiser every Ember LightningModule uses by default: AdamW with warm-up and cosine decay, each replaceable
from the command line (`--optimizer SGD --optimizer.lr 0.01`, `--lr_scheduler CosineAnnealingLR`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import instantiate_class
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from ember.errors import EmberConfigError


def check_optimizer_args(lr: float, weight_decay: float, betas=(0.9, 0.95), warmup_steps: int = 0,
                         min_lr_ratio: float = 0.0):
    """Refuse optimizer settings AdamW or the schedule cannot use, naming the fix (at a module's construction,
    not at its first step): lr > 0, weight_decay >= 0 (both finite), betas two values in [0, 1), warmup_steps
    >= 0, min_lr_ratio in [0, 1]."""
    if not 0 < lr < math.inf or not 0 <= weight_decay < math.inf:
        raise EmberConfigError(f"lr={lr} must be > 0 and weight_decay={weight_decay} >= 0, both finite")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise EmberConfigError(f"betas={list(betas)} must be two values in [0, 1), e.g. [0.9, 0.95]")
    if warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
        raise EmberConfigError(f"warmup_steps={warmup_steps} must be >= 0 and min_lr_ratio={min_lr_ratio} in [0, 1]")


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine down to min_ratio. A pure function of step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_with_schedule(module: LightningModule, lr: float, weight_decay: float, betas, warmup_steps: int,
                        min_lr_ratio: float):
    """AdamW (weight decay on matrices only, not on norms, biases and vectors) with the lr_at schedule
    over the trainer's estimated number of optimizer steps; the return value of configure_optimizers.
    `--optimizer` / `--lr_scheduler` on the command line replace either (see `configure`)."""
    def schedule(opt: Optimizer) -> LRScheduler:
        total = max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer else 1
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(step, total, warmup_steps, min_lr_ratio))

    return configure(module, lambda groups: torch.optim.AdamW(groups, lr=lr, betas=tuple(betas)), schedule,
                     weight_decay)


class OptimizerChoice(NamedTuple):
    """`--optimizer` and `--lr_scheduler` as given on the command line: {"class_path", "init_args"} or None.
    EmberCLI sets it as `module.optimizer_choice`; `configure` reads it."""

    optimizer: dict | None = None
    lr_scheduler: dict | None = None


def decay_groups(module: LightningModule, weight_decay: float | None = None) -> list[dict]:
    """The trainable parameters in two groups: matrices (weight_decay, or the optimizer's own when None) and
    norms, biases and vectors (no weight decay)."""
    params = [p for p in module.parameters() if p.requires_grad]
    matrices = {"params": [p for p in params if p.dim() >= 2]}
    if weight_decay is not None:
        matrices["weight_decay"] = weight_decay
    return [matrices, {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def configure(module: LightningModule, optimizer: Callable[[list[dict]], Optimizer],
              schedule: Callable[[Optimizer], LRScheduler], weight_decay: float) -> dict:
    """configure_optimizers' return value: the module's default `optimizer(decay_groups)` and `schedule(opt)`,
    each replaced by the class chosen with `--optimizer` / `--lr_scheduler` (module.optimizer_choice).

    A chosen optimizer gets decay_groups with its own weight_decay on the matrices, and no schedule (a constant
    lr) unless --lr_scheduler is given too; a chosen scheduler steps once per optimizer step (interval "step"),
    also in a module with manual optimization, which steps it itself."""
    choice = getattr(module, "optimizer_choice", None) or OptimizerChoice()
    if choice.optimizer is not None:
        opt = instantiate_class(decay_groups(module), choice.optimizer)
    else:
        opt = optimizer(decay_groups(module, weight_decay))
    if choice.lr_scheduler is not None:
        sched = instantiate_class(opt, choice.lr_scheduler)
    elif choice.optimizer is None:
        sched = schedule(opt)
    else:
        return {"optimizer": opt}
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
