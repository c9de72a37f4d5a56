"""FiniteGuard: training stops at the first non-finite loss or validation metric of any Ember LightningModule.

EmberModel checks its own loss chunk by chunk; the reasoning core, the JEPA encoder and any other module
Ember ships (or a user's) are covered by this callback, which `ember fit` always adds. It runs before the
checkpoint callbacks (Lightning calls those last), so a NaN is never saved as "best" or "last".
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from ember.errors import NonFiniteLossError


class FiniteGuard(Callback):
    """Raises NonFiniteLossError, naming the step, the value and the last good checkpoint, at the first
    non-finite training loss (a step's output) or `val/...` metric."""

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            self._stop(trainer, pl_module, "the training loss", float(loss.detach().float().mean()))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule):
        if trainer.sanity_checking:
            return
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/") and not math.isfinite(float(value)):
                self._stop(trainer, pl_module, name, float(value))

    @staticmethod
    def _stop(trainer: Trainer, pl_module: LightningModule, what: str, value: float):
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "")
        raise NonFiniteLossError.at(what, value, trainer.global_step, ckpt, getattr(pl_module.hparams, "lr", None))
