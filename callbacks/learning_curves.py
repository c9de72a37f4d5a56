"""LearningCurves: a PNG of training and validation bits per byte, logged to the MLflow run."""

from __future__ import annotations

import logging
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ember.tracking import run_title, save_figure

log = logging.getLogger(__name__)


class LearningCurves(Callback):
    """Plots train/val bits per byte (and the corpus' unigram entropy), redrawn at every validation and at the end of
    fit, so a stopped or killed run keeps the picture of its last validation.

    The PNG lands in the run folder and in the MLflow run's artifacts under `plots/`; its title is the run's name
    and the model's backbone.

    Args:
        train_metric: training metric to plot.
        val_metric: validation metric to plot.
        filename: file name of the plot.
        ylabel: label of the y axis.
    """

    def __init__(self, train_metric: str = "train/bpb", val_metric: str = "val/bpb",
                 filename: str = "learning_curves.png", ylabel: str = "bits per byte"):
        self.train_metric, self.val_metric, self.filename, self.ylabel = train_metric, val_metric, filename, ylabel
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.path: Path | None = None

    def state_dict(self) -> dict:
        """The points so far, saved in checkpoints: a resumed run's picture starts where the first part did."""
        return {"train": list(self.train), "val": list(self.val)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train = [tuple(p) for p in state_dict.get("train", [])]
        self.val = [tuple(p) for p in state_dict.get("val", [])]

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int):
        value = trainer.callback_metrics.get(self.train_metric)
        if value is not None and trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.train.append((trainer.global_step, float(value)))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule):
        value = trainer.callback_metrics.get(self.val_metric)
        if value is not None and not trainer.sanity_checking:
            self.val.append((trainer.global_step, float(value)))
            self.draw(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule):
        self.draw(trainer, pl_module)
        if self.path is not None:
            log.info("learning curves: %s", self.path)

    @rank_zero_only
    def draw(self, trainer: Trainer, pl_module: LightningModule):
        """Write the figure of the points so far (nothing before the first point)."""
        if not self.train and not self.val:
            return
        import matplotlib  # deferred: a second to import, and only the plots need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # deferred, as matplotlib above

        fig, ax = plt.subplots(figsize=(7, 4))
        for points, label in ((self.train, self.train_metric), (self.val, self.val_metric)):
            if points:
                ax.plot(*zip(*points), label=label, marker="o" if len(points) < 30 else None)
        unigram = getattr(getattr(trainer, "datamodule", None), "unigram_bpb", None)
        if unigram is not None:
            ax.axhline(unigram, color="gray", linestyle="--", label=f"unigram entropy {unigram:.2f}")
        model = type(getattr(pl_module, "backbone", pl_module)).__name__
        ax.set(xlabel="optimizer step", ylabel=self.ylabel, title=f"{run_title(trainer)}{model}")
        ax.grid(alpha=0.3)
        ax.legend()
        self.path = save_figure(trainer, fig, self.filename)
        plt.close(fig)
