"""EmberCheckpoint: Lightning's ModelCheckpoint with a `last.ckpt` that is always the latest state."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class EmberCheckpoint(ModelCheckpoint):
    """ModelCheckpoint (same options) whose `last.ckpt` is written after every validation.

    Lightning 2.6 writes `last.ckpt` only when a top-k checkpoint is saved at the same step. With
    `save_top_k: 1` on a monitored loss, `last.ckpt` is then a copy of the best checkpoint whenever the
    loss did not improve, and a run resumed from it silently starts from an earlier step. Here it is
    the state at the latest validation, as `save_last` promises. Runs validate at their last step
    when `val_check_interval` divides `max_steps`; otherwise last.ckpt is the last validation's state.
    """

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        # skipped in sanity checks and fast_dev_run, and when this step's checkpoint (and last) is saved already
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
