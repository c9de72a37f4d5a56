"""EmberProgressBar: Lightning's progress bar without `v_num`."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class EmberProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar less `v_num`, the logger's version (the last digits of an MLflow run id, which
    tell nothing beside the run name); loss, bits/byte, tokens/s and lr stay (what EmberModel logs with prog_bar).
    `ember fit` adds it unless the trainer's `enable_progress_bar` is false or a config brings its own bar."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
