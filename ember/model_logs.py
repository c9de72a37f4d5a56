"""What EmberModel logs: evaluation scores as whole-set means, per-answer accuracies by report group, the memories'
commit rates and occupancy, the spike rate of a spiking sensory encoder, the rounds of active perception.

A mixin of EmberModel (ember/model.py), which provides backbone, sensory, memories, test_memories_off and the
LightningModule's log. Letters: b batch, n targets.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from ember.batch import Batch
from ember.metrics import answer_stats
from ember.ops.slot_memory import SlotMemoryState

LN2 = math.log(2.0)


class ModelLogs:
    """The logging half of EmberModel (see the module docstring)."""

    def _stage(self) -> str:
        return "train" if self.training else ("test" if self.trainer.testing else "val")

    def _log_memory(self, state):
        """Commit rate and occupancy of each memory instance over the last chunk, and their means:
        mem/<stage>/<pm|em>_L<layer>/{commit_rate,occupancy} and mem/<stage>_commit_rate, each averaged over the
        ranks (sync_dist) under data parallelism."""
        if self._trainer is None:
            return
        stage = self._stage()
        rates = []
        for name, memory in self.backbone.memory_report(state).items():
            if not isinstance(memory, SlotMemoryState):
                continue
            rates.append(memory.commit_rate.float().mean())
            self.log(f"mem/{stage}/{name}/commit_rate", rates[-1], sync_dist=True)  # means over every rank
            self.log(f"mem/{stage}/{name}/occupancy", memory.s.float().mean(), sync_dist=True)
        if rates:
            self.log(f"mem/{stage}_commit_rate", torch.stack(rates).mean(), sync_dist=True)

    def _log_spike_rate(self, signal: Tensor | None):
        """Mean neuron output of a spiking sensory encoder on this batch: sensory/spike_rate in training
        (as in AudioJEPA), val/spike_rate, test/spike_rate. Encoders without neurons log nothing."""
        rate = getattr(self.sensory, "spike_rate", None)
        if self._trainer is None or signal is None or rate is None:
            return
        value = rate()
        if torch.isfinite(value):
            stage = self._stage()
            self.log("sensory/spike_rate" if stage == "train" else f"{stage}/spike_rate", value,
                     add_dataloader_idx=False, sync_dist=True)

    def _log_mean(self, name: str, value: Tensor, weight, prog_bar: bool = False):
        """Log `name` as the `weight`-weighted mean of `value` over the epoch's batches on every rank."""
        key = name.replace("/", "__").replace(".", "_")
        if key not in self.eval_means:
            self.eval_means[key] = MeanMetric().to(value.device)
        metric = self.eval_means[key]
        metric.update(value.detach().float(), torch.as_tensor(weight, dtype=torch.float32, device=value.device))
        self.log(name, metric, prog_bar=prog_bar, on_step=False, on_epoch=True, add_dataloader_idx=False,
                 metric_attribute=f"eval_means.{key}")  # made after Lightning listed the module's metrics

    def _log_loss(self, prefix: str, loss: Tensor, batch: Batch, prog_bar: bool = False):
        """<prefix>/loss and <prefix>/bpb, means over every scored token of the set (each batch by its weight)."""
        weight = batch.weights().sum()
        self._log_mean(f"{prefix}/loss", loss, weight, prog_bar)
        if not prefix.startswith("eval/"):
            self._log_mean(f"{prefix}/bpb", loss / LN2, weight, prog_bar)

    def _eval_task(self, dataloader_idx: int):
        """The benchmark task behind a test loader: datamodule.eval_tasks[i] (None = text) or eval_task."""
        dm = getattr(self.trainer, "datamodule", None)
        tasks = getattr(dm, "eval_tasks", None)
        if tasks is not None:
            return tasks[dataloader_idx]
        return getattr(dm, "eval_task", None)

    def _log_answers(self, prefix: str, batch: Batch, preds: Tensor, task=None, variant: str = ""):
        """Benchmark batches (with answer_id): <prefix>/<task><variant>/{acc,byte_acc}[/<group>], overall and
        per group."""
        if not batch.scores_answers:
            return
        task = task if task is not None else self._eval_task(0)
        name, groups = (task.name, list(task.group_names)) if task is not None else ("task", ["all"])
        name += variant
        correct = preds == batch.targets
        stats = answer_stats(correct, batch.loss_mask, batch.answer_id, batch.group, len(groups))
        totals = {k: v.sum() for k, v in stats.items()}
        for suffix, at in [("", totals)] + [(f"/{g}", {k: v[i] for k, v in stats.items()})
                                             for i, g in enumerate(groups)]:
            if at["answers"] > 0:  # weighted by answers and bytes: the set's share, on one rank or many
                self._log_mean(f"{prefix}/{name}/acc{suffix}", at["right"] / at["answers"], at["answers"])
                self._log_mean(f"{prefix}/{name}/byte_acc{suffix}", at["right_bytes"] / at["bytes"], at["bytes"])

    def _log_rounds(self, stop: Tensor, batch: Batch):
        """<stage>/rounds: mean rounds taken; <stage>/rounds/<group>: over the examples with an answer of each of the
        task's report groups."""
        if self._trainer is None:
            return
        stage, taken = self._stage(), (stop + 1).float()
        self._log_mean(f"{stage}/rounds", taken.mean(), taken.numel())
        task = self._eval_task(0)
        if batch.group is None or task is None:
            return
        for i, name in enumerate(task.group_names):
            has = (batch.group == i).any(1)
            if has.any():
                self._log_mean(f"{stage}/rounds/{name}", taken[has].mean(), has.sum())
