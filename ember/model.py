"""EmberModel: the composite LightningModule that wires the plugins together (SPEC 3.6).

    signal -> SensoryEncoder -> tokens e, modulation m
    e -> ReasoningCore -> latent answer tokens y
    bytes + [y ; e] prefix -> LanguageBackbone (PM/EM inside) -> logits
    m -> every PM/EM neuromodulator's span summary (the stream's arousal/valence/threat)

Training is truncated BPTT by manual optimization: each sequence is cut into chunks, the
backbone state is carried from chunk to chunk and detached between them, gradients from all
chunks accumulate, then one optimizer step. Letters: b batch, n tokens, d width, v vocabulary.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Literal, NamedTuple, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from ember.base import BackboneOutput, Consolidator, LanguageBackbone, ReasoningCore, SensoryEncoder
from ember.batch import Batch
from ember.errors import CheckpointMismatchError, EmberConfigError, NonFiniteLossError
from ember.init_from import copy_matching_weights
from ember.model_logs import ModelLogs
from ember.ops.slot_memory import SlotMemoryState, compile_plasticity, memories_off, slot_memories
from ember.optim import adamw_with_schedule, check_optimizer_args
from ember.perception import View, check_rounds, rounds_loss, sense_rounds, stop_round
from ember.sharding import plugin_class, shard_composite

log = logging.getLogger(__name__)
LN2 = math.log(2.0)
CHECKPOINT_FORMAT = 1


class Chunk(NamedTuple):
    """One truncated-BPTT chunk of a batch: its share of the batch's mean loss (), its logits (b, c, v), the
    state after it (carries state, not yet detached) and its share of the sequence's tokens."""

    loss: Tensor
    logits: Tensor
    state: object
    share: float


class EmberModel(ModelLogs, LightningModule):
    """Composite model: a language backbone plus optional sensory, reasoning and consolidation slots.

    Args:
        backbone: the H-module (required), e.g. NMLBackbone or TransformerBackbone.
        sensory: L-module turning a raw signal into prefix tokens; null to ablate.
        reasoning: TRM core refining the sensory tokens into answer tokens; null to ablate.
        consolidator: sleep-phase consolidation, driven by the SleepConsolidation callback; null to ablate.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay on matrices (not on norms and biases).
        betas: AdamW betas.
        warmup_steps: linear warm-up steps before the cosine decay.
        min_lr_ratio: final learning rate as a fraction of lr.
        grad_clip: gradient norm clip (0 disables).
        tbptt_chunk: tokens per truncated-BPTT chunk; null trains each sequence in one chunk.
        generate_tokens: bytes generated per prompt by `ember predict`.
        temperature: sampling temperature for `ember predict` (0 = greedy).
        init_from: checkpoint of an earlier phase or run to start from (configs/phases): every weight whose
            name and shape match is copied, the rest (e.g. a memory this phase adds) keeps its init.
            Ignored when --ckpt_path restores a checkpoint of this model. One of: a checkpoint file
            (runs/1/<run_id>/checkpoints/best.ckpt); a run folder (runs/1/<run_id>: its checkpoints/best.ckpt);
            an MLflow run's checkpoint, runs:/<run_id> (= runs:/<run_id>/best/best.ckpt) or
            runs:/<run_id>/last/last.ckpt, from the run's tracking store (the logger's tracking_uri, else
            $MLFLOW_TRACKING_URI, else <run_dir>/mlflow.db), downloaded once into <run_dir>/cache/artifacts.
            --ckpt_path takes the same forms: `ember fit` resumes from a run folder's or runs:/<run_id>'s
            last.ckpt, validate/test/predict take its best.ckpt.
        compile_periods: torch.compile mode for the memories' whole plasticity periods
            (ember.ops.slot_memory.compile_plasticity): "default", or "reduce-overhead" for CUDA graphs
            on a GPU; null runs them eager. Compiling costs tens of seconds once, so it is for long runs.
        memories: "off" switches every plastic memory (PM, EM) off: no reads, no writes, the slow weights
            alone (ember.ops.slot_memory.memories_off). For testing a trained memory model without its
            memories (`ember test ... --model.init_args.memories off`); not saved with the checkpoint.
        test_memories_off: `ember test` scores every benchmark a second time with the memories off, beside
            the first (eval/<task>/memories_off/...), so one test shows what the memories add; not saved with
            the checkpoint.
        modulate_memories: the sensory slot's modulation m (arousal/valence/threat) reaches every memory's
            neuromodulator, which reads it at each commit (a LearnedNeuromodulator with modulation_dim 3); false
            (the modulation ablation, configs/ablate/no_modulation.yaml) leaves them reading zeros.
        max_rounds: active perception (SPEC 3.6): rounds of sensing the reasoning core may take. Round r sees the
            signal's window [r view_seconds, (r + 1) view_seconds) (`SensoryEncoder.sense`), with the core's y and z
            carried from the round before; an example stops after the first round whose more-sensing flag is below
            sense_threshold, or after max_rounds. 1: one view, no loop. More than 1 needs a reasoning core and
            whole-sequence training (tbptt_chunk null or at least the sequence). Not saved with the checkpoint:
            `ember test ... --model.init_args.max_rounds 4` tests with more rounds than trained.
        view_seconds: length of each round's window of the signal; null: the whole signal (max_rounds 1 only).
        round_cost: nats of answer loss another round must save to be worth taking: the more-sensing flag of round
            r is trained (binary cross-entropy) towards "round r + 1's answer loss is lower by more than this".
            Training runs every round and averages their answer losses, so each round's answer is taught.
        deep_supervision: score every supervision step of the reasoning core, not only its last (TRM's deep
            supervision inside the composite, `ReasoningCore.steps`): each step's prefix runs through the backbone
            (one batch of all steps), the losses are averaged, and y and z are detached between steps. Needs the
            sensory and reasoning slots and whole-sequence training.
        sense_threshold: an example stops after the first round whose more-sensing flag is below this: 0 takes every
            round (the "always the most rounds" comparison), 1 only the first. Not saved with the checkpoint.
    """

    def __init__(self, backbone: LanguageBackbone, sensory: Optional[SensoryEncoder] = None,
                 reasoning: Optional[ReasoningCore] = None, consolidator: Optional[Consolidator] = None,
                 lr: float = 1e-3, weight_decay: float = 0.1, betas: tuple[float, float] = (0.9, 0.95),
                 warmup_steps: int = 100, min_lr_ratio: float = 0.1, grad_clip: float = 1.0,
                 tbptt_chunk: Optional[int] = None, generate_tokens: int = 200, temperature: float = 0.8,
                 init_from: Optional[str] = None,
                 compile_periods: Optional[Literal["default", "reduce-overhead", "max-autotune"]] = None,
                 memories: Literal["on", "off"] = "on", test_memories_off: bool = True,
                 modulate_memories: bool = True, max_rounds: int = 1, view_seconds: Optional[float] = None,
                 round_cost: float = 0.01, deep_supervision: bool = False, sense_threshold: float = 0.5):
        super().__init__()
        if tbptt_chunk is not None and tbptt_chunk < 1:
            raise EmberConfigError(f"tbptt_chunk={tbptt_chunk} must be >= 1 (or null for whole sequences)")
        check_optimizer_args(lr, weight_decay, betas, warmup_steps, min_lr_ratio)
        if not 0 <= grad_clip < math.inf or generate_tokens < 0 or not 0 <= temperature < math.inf:
            raise EmberConfigError(f"grad_clip={grad_clip} (0: off) and temperature={temperature} (0: greedy) must "
                                   f"be finite and >= 0, generate_tokens={generate_tokens} >= 0")
        for name, slot in (("sensory", sensory), ("reasoning", reasoning)):
            if slot is not None and getattr(slot, "d_model", backbone.d_model) != backbone.d_model:
                raise EmberConfigError(f"{name}.d_model={slot.d_model} must equal backbone.d_model="
                                       f"{backbone.d_model}: the {name} tokens are the backbone's prefix")
        check_rounds(max_rounds, view_seconds, round_cost, sense_threshold, sensory, reasoning)
        if deep_supervision and (sensory is None or reasoning is None):
            raise EmberConfigError("deep_supervision scores the reasoning core's steps on the sensory prefix: it needs "
                                   "model.sensory and model.reasoning, or set it false")
        readers = [m for m in slot_memories(backbone) if m.modulation_dim]
        if readers and sensory is None:
            raise EmberConfigError(f"{len(readers)} memory neuromodulator(s) read modulation_dim="
                                   f"{readers[0].modulation_dim} signals, but the model has no sensory slot to give "
                                   "them: set the neuromodulators' modulation_dim to 0, or fill model.sensory")
        self.backbone, self.sensory, self.reasoning, self.consolidator = backbone, sensory, reasoning, consolidator
        self.automatic_optimization = False
        # sampling settings and the memory switch are not hyper-parameters: LightningCLI restores a checkpoint's
        # hyper-parameters over the command line, and `ember predict --model.init_args.temperature 0` (or
        # `ember test --model.init_args.memories off`) must take effect
        # logger=False: the run's params are the resolved config's (MLflowSaveConfig: model.*, data.*); these again
        # would show every model setting twice, plus LightningCLI's `_instantiator`
        self.save_hyperparameters(ignore=["backbone", "sensory", "reasoning", "consolidator", "generate_tokens",
                                          "temperature", "memories", "test_memories_off", "max_rounds",
                                          "sense_threshold"], logger=False)
        self.generate_tokens, self.temperature, self.memories = generate_tokens, temperature, memories
        self.max_rounds, self.sense_threshold = max_rounds, sense_threshold
        self.test_memories_off = test_memories_off
        # validation and test scores, each a weighted mean over the whole set and every rank (torchmetrics sums value
        # x weight and weight across ranks before dividing); made at first use, never saved
        self.eval_means = nn.ModuleDict()

    def setup(self, stage: str):
        if self.hparams.init_from:
            self.load_phase(self.hparams.init_from)
        if self.hparams.get("compile_periods"):
            compile_plasticity(self, mode=self.hparams.compile_periods)

    def configure_model(self):
        """Under ModelParallelStrategy (FSDP2, `device_mesh` set): shard the layers and slots (ember.sharding)."""
        if self.device_mesh is not None:
            shard_composite(self, self.device_mesh["data_parallel"])

    def load_phase(self, path: str) -> dict[str, list[str]]:
        """Copy the weights of an earlier phase's checkpoint that fit this model (see init_from)."""
        return copy_matching_weights(self, path, "model.init_from")

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, tokens: Tensor, state=None, signal: Tensor | None = None) -> BackboneOutput:
        """tokens (b, n) int64; state: backbone state or None; signal: raw sensory input or None.

        With a signal, its sensory tokens (and the reasoning core's answer, after the rounds each example takes) are
        the prefix, and its modulation goes to the memories (modulate_memories). Returns BackboneOutput(logits
        (b, n, v), state) (carries state).
        """
        with memories_off(self) if self.memories == "off" else nullcontext():
            prefix, modulation = self.perceive(signal)
            return self.backbone(tokens, self._modulated(state, modulation), prefix)

    def _modulated(self, state, modulation: Tensor | None):
        if modulation is None or not self.hparams.get("modulate_memories", True):
            return state
        return self.backbone.modulate(state, modulation)

    def perceive(self, signal: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """The prefix tokens (b, p, d) and the sensory modulation (b, k) of each example's last round (see
        `rounds`); (None, None) without a signal or a sensory slot."""
        views = self.rounds(signal)
        if not views:
            return None, None
        pick = stop_round(views, self.sense_threshold)  # (b,)
        prefix, modulation = (torch.stack(v, 0)[pick, torch.arange(pick.shape[0])]
                              for v in zip(*[(view.prefix, view.modulation) for view in views if view.final]))
        return prefix, modulation

    def rounds(self, signal: Tensor | None) -> list[View]:
        """Every round of active perception (ember.perception.sense_rounds); [] without a signal or sensory slot."""
        if signal is None or self.sensory is None:
            return []
        deep = self.training and self.hparams.get("deep_supervision", False)
        return sense_rounds(self.sensory, self.reasoning, signal, self.max_rounds, self.hparams.get("view_seconds"),
                            deep)

    # ---- training --------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> Tensor:
        batch = Batch.of(batch)
        opt, sched = self.optimizers(), self.lr_schedulers()
        # 1. clear the gradients of the last step
        opt.zero_grad(set_to_none=True)
        # 2. chunk by chunk (truncated BPTT): forward, loss plus the controllers' budgets, backward at once
        loss, state = torch.zeros((), device=batch.tokens.device), None
        for chunk in self._chunks(batch):
            self._check_finite(chunk.loss)
            aux = sum(self._memory_aux(chunk.state), chunk.loss.new_zeros(()))
            self.manual_backward(chunk.loss + aux * chunk.share)
            loss, state = loss + chunk.loss.detach(), chunk.state.detach()
        # 3. clip the gradient norm, step the optimizer and the schedule (manual optimization: Lightning steps
        # no scheduler, so the default lr_at schedule or a --lr_scheduler steps here, once per optimizer step)
        if self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        if sched is not None:  # None: --optimizer without --lr_scheduler, a constant lr
            sched.step()
        # 4. log
        self._log_training(loss, opt.param_groups[0]["lr"], state, batch)
        return loss

    def _chunks(self, batch: Batch) -> Iterator[Chunk]:
        """The batch's mean next-byte loss (nats), chunk by chunk (`tbptt_chunk` tokens) with the state carried.

        Yields each chunk's share of the loss; the state is detached after the caller has seen the chunk,
        so a backward pass holds one chunk's graph at a time. Each target counts by `Batch.weights`: a generated
        benchmark's answers only (loss_mask), or its answers and, lighter, their context (loss_weight).
        """
        if batch.signal is not None and self.sensory is not None and (
                self.max_rounds > 1 or self.hparams.get("deep_supervision", False)):
            yield self._rounds_chunk(batch)
            return
        inputs, targets = batch.inputs, batch.targets  # (b, n)
        weight = batch.weights()
        total_weight = weight.sum().clamp_min(1.0)
        n = inputs.shape[1]
        size = self.hparams.tbptt_chunk or n
        state = None
        for start in range(0, n, size):
            stop = min(n, start + size)
            logits, state = self(inputs[:, start:stop], state, batch.signal if start == 0 else None)  # (b, c, v)
            per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets[:, start:stop].flatten(),
                                        reduction="none")  # (b * c,)
            loss = (per_token * weight[:, start:stop].flatten()).sum() / total_weight
            yield Chunk(loss, logits, state, (stop - start) / n)
            state = state.detach()

    def _rounds_chunk(self, batch: Batch) -> Chunk:
        """Active perception over the whole sequence: every round's prefix runs as one backbone batch (R b streams);
        the loss is ember.perception.rounds_loss's. Logs <stage>/rounds, the mean rounds taken, and per group."""
        inputs, targets, weight = batch.inputs, batch.targets, batch.weights()  # (b, n)
        b, n = inputs.shape
        if (self.hparams.tbptt_chunk or n) < n:
            raise EmberConfigError(f"max_rounds={self.max_rounds} trains whole sequences, but tbptt_chunk="
                                   f"{self.hparams.tbptt_chunk} cuts these {n} tokens: set model.init_args.tbptt_chunk "
                                   "null")
        views = self.rounds(batch.signal)
        r = len(views)
        state = self._modulated(None, torch.cat([v.modulation for v in views]))
        logits, state = self.backbone(inputs.repeat(r, 1), state, torch.cat([v.prefix for v in views]))
        per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets.repeat(r, 1).flatten(),
                                    reduction="none").view(r, b, n) * weight  # (R, b, n)
        loss, stop = rounds_loss(per_token, weight, views, self.hparams.round_cost, self.training,
                                 self.sense_threshold)
        self._log_rounds(stop, batch)
        finals = torch.tensor([i for i, view in enumerate(views) if view.final], device=logits.device)
        return Chunk(loss, logits.view(r, b, n, -1)[finals[stop], torch.arange(b)], state, 1.0)

    def _memory_aux(self, state) -> list[Tensor]:
        """The controllers' losses (commit budgets) of the last chunk, one per memory instance."""
        return [memory.aux_loss for memory in self.backbone.memory_report(state).values()
                if isinstance(memory, SlotMemoryState)]

    def evaluate(self, batch) -> tuple[Tensor, Tensor]:
        """The mean next-byte loss (nats) of a batch (a Batch, or what a data module gives) and the greedy
        predictions (b, n), chunk by chunk with the state carried."""
        batch = Batch.of(batch)
        loss, preds, state = batch.tokens.new_zeros((), dtype=torch.float32), [], None
        for chunk in self._chunks(batch):
            loss, state = loss + chunk.loss, chunk.state
            preds.append(chunk.logits.argmax(-1))
        self._log_memory(state)
        self._log_spike_rate(batch.signal)
        return loss, torch.cat(preds, 1)

    def _log_training(self, loss: Tensor, lr: float, state, batch: Batch):
        self.log_dict({"train/loss": loss, "train/bpb": loss / LN2}, prog_bar=True)
        self.log("train/lr", lr, prog_bar=True)
        now, last = time.perf_counter(), getattr(self, "_last_step_time", None)
        if last is not None:  # tokens/s over the wall time since the previous step (data loading included)
            self.log("train/tok_s", batch.tokens.numel() / (now - last), prog_bar=True)
        self._last_step_time = now
        self._log_memory(state)
        self._log_spike_rate(batch.signal)

    def _check_finite(self, loss: Tensor):
        if torch.isfinite(loss):
            return
        ckpt = getattr(self.trainer.checkpoint_callback, "last_model_path", "")
        raise NonFiniteLossError.at("loss", loss.item(), self.global_step, ckpt, self.hparams.lr,
                                    "model.warmup_steps")

    def validation_step(self, batch, batch_idx: int):
        batch = Batch.of(batch)
        loss, preds = self.evaluate(batch)
        self._log_loss("val", loss, batch, prog_bar=True)
        self._log_answers("val", batch, preds)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        """Text batches log test/{loss,bpb}; benchmark batches (a data module's extra test loaders,
        or a MemoryTaskData) log eval/<task>/{loss,acc,byte_acc}."""
        batch = Batch.of(batch)
        loss, preds = self.evaluate(batch)
        task = self._eval_task(dataloader_idx)
        self._log_loss("test" if task is None or not batch.scores_answers else f"eval/{task.name}", loss, batch)
        self._log_answers("eval", batch, preds, task)
        if batch.scores_answers and self.test_memories_off and self.memories == "on" and slot_memories(self):
            with memories_off(self):
                _, preds_off = self.evaluate(batch)
            self._log_answers("eval", batch, preds_off, task, variant="/memories_off")

    def on_validation_start(self):
        self._last_step_time = None  # the next training step's tokens/s leaves the validation out

    def on_train_start(self):
        dm = getattr(self.trainer, "datamodule", None)
        if getattr(dm, "unigram_bpb", None) is not None:
            for logger in self.loggers:
                logger.log_metrics({"data/unigram_bpb": dm.unigram_bpb}, step=0)

    # ---- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt: Tensor, max_new: int, temperature: float = 0.8) -> Tensor:
        """Sample max_new bytes after prompt (b, p), carrying the backbone state token by token."""
        logits, state = self(prompt)
        out = []
        for _ in range(max_new):
            last = logits[:, -1, : self.backbone.vocab_size].float()
            if temperature > 0:
                nxt = torch.multinomial(F.softmax(last / temperature, dim=-1), 1)
            else:
                nxt = last.argmax(-1, keepdim=True)
            out.append(nxt)
            logits, state = self(nxt, state)
        return torch.cat(out, dim=1)  # (b, max_new)

    def predict_step(self, batch, batch_idx: int) -> list[dict[str, str]]:
        prompt = Batch.of(batch).tokens
        new = self.generate(prompt, self.generate_tokens, self.temperature)
        decode = lambda t: bytes(t.tolist()).decode("utf-8", errors="replace")  # noqa: E731
        return [{"prompt": decode(p), "completion": decode(c)} for p, c in zip(prompt.cpu(), new.cpu())]

    # ---- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(self, hp.lr, hp.weight_decay, hp.betas, hp.warmup_steps, hp.min_lr_ratio)

    # ---- checkpoints -----------------------------------------------------------------------
    def composite_signature(self) -> dict:
        """Which plugin fills each slot, and every parameter's shape."""
        slots = {name: None if mod is None else plugin_class(mod).__name__ for name, mod in
                 (("backbone", self.backbone), ("sensory", self.sensory), ("reasoning", self.reasoning),
                  ("consolidator", self.consolidator))}
        return {"format": CHECKPOINT_FORMAT, "slots": slots,
                "shapes": {k: list(v.shape) for k, v in self.state_dict().items()}}

    def on_save_checkpoint(self, checkpoint: dict):
        checkpoint["ember"] = self.composite_signature()

    def on_load_checkpoint(self, checkpoint: dict):
        """Refuse a checkpoint of another composite with a message naming the difference."""
        saved = checkpoint.get("ember")
        if saved is None:
            return
        mine = self.composite_signature()
        slot_diff = {k: (saved["slots"].get(k), v) for k, v in mine["slots"].items() if saved["slots"].get(k) != v}
        shape_diff = _shape_diff(saved["shapes"], mine["shapes"])
        if slot_diff or shape_diff:
            detail = "; ".join(f"{k}: checkpoint has {a}, config has {b}" for k, (a, b) in slot_diff.items())
            if shape_diff:
                detail += ("; " if detail else "") + f"{len(shape_diff)} parameter(s) differ, e.g. {shape_diff[0]}"
            raise CheckpointMismatchError(
                f"the checkpoint was saved from a different composite ({detail}). Pass the config it was "
                "trained with: the config.yaml saved beside its checkpoints folder (and in MLflow).")


def _shape_diff(saved: dict, mine: dict) -> list[str]:
    out = [f"{k} missing from the checkpoint" for k in mine if k not in saved]
    out += [f"{k} not in this model" for k in saved if k not in mine]
    same = lambda a, b: a == b or {tuple(a), tuple(b)} == {(), (1,)}  # noqa: E731  scalar = (1,): EM log_scale
    out += [f"{k}: checkpoint {saved[k]} vs model {v}" for k, v in mine.items() if k in saved and not same(saved[k], v)]
    return out
