"""SleepConsolidation: during `ember fit`, a sleep every N steps that moves what the memories learned into the slow
weights (SPEC 3.7), with `sleep/*` metrics and a plot per sleep."""

from __future__ import annotations

import logging
import math
from typing import Optional

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor

from ember.batch import Batch
from ember.errors import EmberConfigError
from ember.sleep import Episode, general_sequences
from ember.tracking import run_title, save_figure

log = logging.getLogger(__name__)


class SleepConsolidation(Callback):
    """A sleep every `every_n_steps` training steps, by the model's consolidator, on a replay buffer of sessions.

    Every `every_n_steps` training steps (a day) the model sleeps: its consolidator (model.consolidator:
    ReplayDistillation, ReadoutAlignment, ...) replays the day's sessions, kept in a bounded replay buffer (the
    `buffer` most recent training sequences, each replayed from empty memories as it was lived), with general text,
    and changes the slow weights it owns. Logs `sleep/<metric>` (KL before/after, anchor, general bits/byte
    before/after) at the step and saves `sleep/sleep_<k>.png` (the sleep's loss per step and its KL before/after)
    to the run folder and the MLflow run.

    The sleep runs before that step's checkpoint is saved, from the buffer kept in the checkpoint, with a seed of
    its own (seed + k for the k-th sleep): a run killed during a sleep resumes from the checkpoint before it and
    sleeps again the same way. With no consolidator (configs/ablate/no_sleep.yaml) the sleeps are skipped.

    Args:
        every_n_steps: training steps per day.
        buffer: replay buffer size in sequences (the most recent are kept).
        general_text: a text file whose slices are the sleep's general text (null: none).
        general_sequences: general-text sequences per sleep.
        general_length: bytes per general-text sequence.
        seed: seed of the first sleep's draws.
        plot: save the figure of each sleep.
    """

    def __init__(self, every_n_steps: int = 500, buffer: int = 64, general_text: Optional[str] = None,
                 general_sequences: int = 8, general_length: int = 256, seed: int = 0, plot: bool = True):
        if every_n_steps < 1 or buffer < 1 or general_sequences < 1 or general_length < 1:
            raise EmberConfigError(f"SleepConsolidation: every_n_steps={every_n_steps}, buffer={buffer}, "
                                   f"general_sequences={general_sequences} and general_length={general_length} must "
                                   "be >= 1")
        self.every_n_steps, self.buffer_size, self.general_text = every_n_steps, buffer, general_text
        self.general_count, self.general_length, self.seed, self.plot = general_sequences, general_length, seed, plot
        self.buffer: list[Tensor] = []
        self.sleeps = 0
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict:
        return {"buffer": [t.to(torch.int16) for t in self.buffer], "sleeps": self.sleeps, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.buffer = [t.long() for t in state_dict.get("buffer", [])]
        self.sleeps, self.history = state_dict.get("sleeps", 0), list(state_dict.get("history", []))

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule):
        if getattr(pl_module, "consolidator", None) is None:
            log.info("SleepConsolidation: the model has no consolidator (model.init_args.consolidator is null), so "
                     "it never sleeps: the no-sleep ablation")
        if self.general_text is not None:  # a missing file fails now, not at the first sleep
            general_sequences(self.general_text, 1, self.general_length, self.seed)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int):
        tokens = Batch.of(batch).tokens.detach().cpu()
        self.buffer = (self.buffer + list(tokens.unbind(0)))[-self.buffer_size :]
        if trainer.global_step % self.every_n_steps == 0 and getattr(pl_module, "consolidator", None) is not None:
            self.sleep(trainer, pl_module)

    def sleep(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        """One sleep now: consolidate the buffer, log and plot it."""
        seed = self.seed + self.sleeps
        general = ([] if self.general_text is None else
                   general_sequences(self.general_text, self.general_count, self.general_length, seed))
        metrics = pl_module.consolidator.consolidate(pl_module, [Episode(t) for t in self.buffer], general, seed)
        self.sleeps += 1
        self.history.append({"step": trainer.global_step, **metrics})
        finite = {f"sleep/{k}": v for k, v in metrics.items() if math.isfinite(v)}  # NaN: not measured (no text)
        for logger in trainer.loggers:
            logger.log_metrics(finite, step=trainer.global_step)
        log.info("sleep %d at step %d: KL %.4f -> %.4f", self.sleeps, trainer.global_step,
                 metrics.get("kl_before", float("nan")), metrics.get("kl_after", float("nan")))
        if self.plot:
            self.draw(trainer, pl_module, metrics)
        return metrics

    @rank_zero_only
    def draw(self, trainer: Trainer, pl_module: LightningModule, metrics: dict[str, float]):
        import matplotlib  # deferred: a second to import, and only the plots need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # deferred, as matplotlib above

        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        curve = getattr(pl_module.consolidator, "curve", [])
        if curve:
            left.plot(range(1, len(curve) + 1), curve)
        left.set(xlabel="sleep step", ylabel="replay loss", title="the sleep's loss")
        right.bar(["before", "after"], [metrics.get("kl_before", 0.0), metrics.get("kl_after", 0.0)])
        right.set(ylabel="KL(memories on || off), nats/byte", title="what the slow weights lack")
        fig.suptitle(f"{run_title(trainer)}sleep {self.sleeps} at step {trainer.global_step}")
        fig.tight_layout()
        save_figure(trainer, fig, f"sleep/sleep_{self.sleeps}.png")
        plt.close(fig)
