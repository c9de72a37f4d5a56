"""MemoryUsage: a PNG of every memory's slot usage over one validation session, logged to MLflow."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from ember.batch import Batch
from ember.callbacks.slot_usage import slot_usage_figure, trace_slot_usage
from ember.tracking import run_title, save_figure

log = logging.getLogger(__name__)


class MemoryUsage(Callback):
    """At the end of fit and of test, streams the first validation/test sequence through the model
    span by span and plots each PM/EM instance's slot strengths and commit rate over it.
    Does nothing for a model without plastic memories.

    Args:
        span: tokens per step of the trace (one column of the heat map).
        filename: file name of the plot (test runs get a `test_` prefix).
    """

    def __init__(self, span: int = 32, filename: str = "slot_usage.png"):
        self.span, self.filename = span, filename
        self.path: Path | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule):
        self._plot(trainer, pl_module, trainer.datamodule.val_dataloader() if trainer.datamodule else None, "")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule):
        self._plot(trainer, pl_module, trainer.datamodule.test_dataloader() if trainer.datamodule else None, "test_")

    def _plot(self, trainer: Trainer, pl_module: LightningModule, loader, prefix: str):
        """Rank 0 traces and draws; under FSDP (a sharded model: every forward gathers from all ranks) every rank
        traces its first sequence and rank 0 draws."""
        sharded = getattr(pl_module, "device_mesh", None) is not None
        if loader is None or not hasattr(pl_module, "backbone") or (trainer.global_rank != 0 and not sharded):
            return
        if isinstance(loader, (list, tuple)):  # several test loaders: the first (the text)
            loader = loader[0]
        batch = next(iter(loader))
        tokens = Batch.of(batch).tokens[:1].to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        strengths, rates = trace_slot_usage(pl_module, tokens, self.span)
        pl_module.train(was_training)
        if not strengths or trainer.global_rank != 0:
            return
        import matplotlib.pyplot as plt  # deferred: a second to import, and only the plots need it

        title = f"{run_title(trainer)}slot usage over the first {'test' if prefix else 'validation'} sequence"
        fig = slot_usage_figure(strengths, rates, self.span, title)
        self.path = save_figure(trainer, fig, prefix + self.filename)
        plt.close(fig)
        log.info("slot usage: %s", self.path)
