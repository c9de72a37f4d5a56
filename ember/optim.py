"""The optimiser every Ember LightningModule uses: AdamW with warm-up and cosine decay."""

from __future__ import annotations

import math

import torch
from lightning.pytorch import LightningModule


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine down to min_ratio. A pure function of step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_with_schedule(module: LightningModule, lr: float, weight_decay: float, betas, warmup_steps: int,
                        min_lr_ratio: float):
    """AdamW (weight decay on matrices only, not on norms, biases and vectors) with the lr_at schedule
    over the trainer's estimated number of optimizer steps; the return value of configure_optimizers."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                            lr=lr, betas=tuple(betas))
    total = max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer else 1
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(step, total, warmup_steps, min_lr_ratio))
    return [opt], [{"scheduler": sched, "interval": "step"}]
