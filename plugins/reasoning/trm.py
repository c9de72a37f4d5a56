"""TinyRecursiveCore: the Tiny Recursive Model as a ReasoningCore plugin (SPEC 3.5, seed 002).

Trains alone on puzzles (`ember fit --config configs/reasoning/sudoku.yaml`) and, in the
composite, refines sensory tokens x into latent answer tokens y.

Deep supervision lives in the training step, not in a callback, because it is a property of
the data flow rather than of the optimiser: every training step runs ONE supervision step
on a persistent batch (the carry). Samples whose halting head fires (or that used all N_sup
steps) leave the carry and fresh puzzles from the incoming batch take their place; the
others keep their detached (y, z) and think one step further. This is the paper's training
loop; a callback would have to reach into the batch to do the same. The carry is not
checkpointed: a resumed run starts a fresh carry, which costs at most N_sup steps of warm-up.

Weight EMA (0.999) for evaluation is Lightning's `EMAWeightAveraging` callback in the
configs: it swaps the average in for validation and saves it as the checkpoint's weights.

Letters: b batch, s positions (cells), d width, v vocabulary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.base import ReasoningCore, ReasoningOutput, RecursionNetwork
from ember.errors import EmberConfigError
from ember.init_from import copy_matching_weights
from ember.ops.recursion import deep_recursion
from ember.optim import adamw_with_schedule, check_optimizer_args
from ember.plugins.reasoning.networks import MixerNetwork

log = logging.getLogger(__name__)
MAX_RECURSION = 1 << 16  # network calls per supervision step, and supervision steps: beyond, a step never ends


class Carry(NamedTuple):
    """The persistent training batch; every field has leading dimension b."""

    inputs: Tensor  # (b, s) int64 puzzle tokens
    labels: Tensor  # (b, s) int64 solution tokens
    y: Tensor  # (b, s, d) answer, detached
    z: Tensor  # (b, s, d) latent, detached
    steps: Tensor  # (b,) int64 supervision steps taken on this puzzle
    halted: Tensor  # (b,) bool: leaves the carry at the next training step


class Thought(NamedTuple):
    """Evaluation of a batch with a fixed number of supervision steps; each (b,) unless noted."""

    preds: Tensor  # (b, s) answer at the halting step (see halting_step)
    final_preds: Tensor  # (b, s) answer after all steps
    final_logits: Tensor  # (b, s, v)
    halt_step: Tensor  # int64 in 1..steps: the step whose answer `preds` is
    steps_used: Tensor  # int64 in 1..steps: halt_step where the head fired, else all steps
    step_preds: Tensor  # (b, steps, s) the answer after every step
    halt_logits: Tensor  # (b, steps) the halting logit after every step


def halting_step(halt_logits: Tensor, halt_prob: float) -> tuple[Tensor, Tensor]:
    """Where to read each answer, from the halting logits (b, steps): the first step whose halting probability
    exceeds halt_prob; where none does, the step where it was highest (the latest of equals, so a head that
    never changes reads the last step).

    Returns the step read, 0-based (b,), and the steps used (b,) in 1..steps: a puzzle whose head fires
    stops there, one whose head never fires ran them all.
    """
    fires = halt_logits > math.log(halt_prob / (1.0 - halt_prob))
    steps = halt_logits.shape[1]
    fired = fires.any(1)
    read = torch.where(fired, fires.float().argmax(1), steps - 1 - halt_logits.flip(1).argmax(1))
    return read, torch.where(fired, read + 1, steps)


def fill_accuracy(preds: Tensor, inputs: Tensor, labels: Tensor) -> Tensor:
    """Accuracy on the cells the answer changes (Sudoku blanks, a maze's path), all puzzles pooled.

    cell accuracy counts the cells copied from the input too: on a maze they are over 80% of the grid.
    preds, inputs, labels: (b, s) token ids. 0 where no cell changes.
    """
    changed = labels != inputs
    return ((preds == labels) & changed).sum() / changed.sum().clamp(min=1)


class TinyRecursiveCore(ReasoningCore):
    """Tiny Recursive Model: answer y and latent z refined by one tiny network, deep supervision, ACT halting.

    Args:
        vocab_size: puzzle token vocabulary (the data module's vocab_size: 11 Sudoku, 6 Maze).
        seq_len: positions per puzzle (81 Sudoku, 900 Maze 30x30); sizes the network.
        d_model: width of x, y, z (the paper: 512).
        network: the network f, a factory called with (d_model, seq_len): MixerNetwork (TRM-MLP,
            the default) or AttentionNetwork (TRM-Att).
        T: cycles per supervision step; the first T-1 run without gradient (the paper: 3).
        n: latent updates per cycle (the paper: 6).
        n_sup: maximum supervision steps per puzzle in training (the paper: 16).
        eval_steps: supervision steps at validation/test; null = n_sup. More than n_sup is allowed
            (more thinking) and logged.
        halt_prob: at validation/test, the answer is read at the first step whose halting probability
            exceeds this, or, where none does, at the step where it was highest (training halts at 0.5,
            as in the paper). The head is trained by BCE on "the answer is right", so 0.5 stops on a
            coin flip: on the 4000-step CPU Sudoku model of BENCHMARKS section 8 (validation puzzles)
            0.5 reads 0.875 exact, 0.95 reads 0.980, the same as after all 16 steps.
        halt_explore: probability that a training puzzle must take a random minimum number of
            steps before it may halt (ACT exploration, the paper's 0.1).
        halt_weight: weight of the halting BCE in the loss (the paper's code: 0.5).
        lr: peak AdamW learning rate (the paper: 1e-4).
        weight_decay: AdamW weight decay on matrices (the paper: 1.0).
        betas: AdamW betas (the paper: 0.9, 0.95).
        warmup_steps: linear warm-up steps (the paper: 2000).
        min_lr_ratio: final learning rate as a fraction of lr after a cosine decay (1.0 = constant,
            as in the paper).
        one_step_gradient: backpropagate through the last latent update and the answer update only
            (HRM's 1-step gradient; the paper's ablation, 87.4 -> 56.5 on Sudoku-Extreme) instead of the
            whole last cycle.
        n_sup_warmup: optimizer steps at the start of training in which every puzzle halts after one
            supervision step, so each batch slot takes a fresh puzzle every step; then n_sup. With n_sup=16
            and halting not yet learned, a slot keeps its puzzle for 16 steps: a batch of 16 sees one new
            puzzle a step. On 15x15 mazes at batch 16 that held TRM-Att on the copy plateau for 3000 steps;
            n_sup=1 left it by step 1500, and 1500 warm-up steps let n_sup=16 leave it too (BENCHMARKS
            section 8). 0 (the paper's recipe): no warm-up.
        init_from: a checkpoint to start training from: its weights (the EMA average, for runs under weight EMA),
            with this config's hyper-parameters and a fresh optimizer and step count. For a change of recipe
            mid-training, e.g. deep supervision after a one-step run: a resume (--ckpt_path) would restore the
            checkpoint's n_sup. Ignored when --ckpt_path restores a checkpoint.
    """

    def __init__(self, vocab_size: int = 11, seq_len: int = 81, d_model: int = 512,
                 network: Optional[Callable[[int, int], RecursionNetwork]] = None,
                 T: int = 3, n: int = 6, n_sup: int = 16, eval_steps: Optional[int] = None,
                 halt_explore: float = 0.1, halt_weight: float = 0.5, lr: float = 1e-4,
                 weight_decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.95), warmup_steps: int = 2000,
                 min_lr_ratio: float = 1.0, one_step_gradient: bool = False, halt_prob: float = 0.95,
                 n_sup_warmup: int = 0, init_from: Optional[str] = None):
        super().__init__()
        if min(T, n, n_sup) < 1 or (eval_steps is not None and eval_steps < 1):
            raise EmberConfigError(f"T={T}, n={n}, n_sup={n_sup} and eval_steps={eval_steps} must be >= 1")
        if n_sup_warmup < 0:
            raise EmberConfigError(f"n_sup_warmup={n_sup_warmup} counts optimizer steps: use 0 (none) or more")
        if not 0 < halt_prob < 1:
            raise EmberConfigError(f"halt_prob={halt_prob} is a probability: use a value in (0, 1)")
        if min(vocab_size, seq_len, d_model) < 1:
            raise EmberConfigError(f"vocab_size={vocab_size}, seq_len={seq_len} and d_model={d_model} must be >= 1")
        if T * (n + 1) > MAX_RECURSION or max(n_sup, eval_steps or 0) > MAX_RECURSION:
            raise EmberConfigError(f"T={T} cycles of n={n} latent updates ({T * (n + 1)} network calls per supervision "
                                   f"step; the paper: 21), n_sup={n_sup} and eval_steps={eval_steps}: each must stay "
                                   f"within {MAX_RECURSION}, or a step never ends")
        if not 0 <= halt_explore <= 1 or not 0 <= halt_weight < math.inf:
            raise EmberConfigError(f"halt_explore={halt_explore} is a probability (in [0, 1]) and halt_weight="
                                   f"{halt_weight} a finite weight >= 0")
        check_optimizer_args(lr, weight_decay, betas, warmup_steps, min_lr_ratio)
        # eval_steps and halt_prob are not hyper-parameters: LightningCLI would restore them from the checkpoint over
        # the command line, and test-time thinking must stay settable (`ember test ... --model.init_args.eval_steps 32`)
        self.save_own_hyperparameters(ignore=["network", "eval_steps", "halt_prob"])
        self._eval_steps, self.halt_prob = eval_steps, halt_prob
        self.d_model, self.vocab_size, self.seq_len = d_model, vocab_size, seq_len
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.trunc_normal_(self.embed.weight, std=1.0 / math.sqrt(d_model))
        self.net = (network or MixerNetwork)(d_model, seq_len)
        self.answer_head = nn.Linear(d_model, vocab_size, bias=False)
        self.halt_head = nn.Linear(d_model, 1)
        self.sense_head = nn.Linear(d_model, 1)
        nn.init.zeros_(self.halt_head.weight)
        nn.init.constant_(self.halt_head.bias, -5.0)  # starts by never halting, as in the paper's code
        self.register_buffer("y_init", nn.init.trunc_normal_(torch.empty(d_model), std=1.0))
        self.register_buffer("z_init", nn.init.trunc_normal_(torch.empty(d_model), std=1.0))
        self._carry: Carry | None = None

    # ---- the model ---------------------------------------------------------------------------
    def input_embedding(self, inputs: Tensor) -> Tensor:
        """inputs (b, s) int64 -> x (b, s, d), scaled to unit variance."""
        return self.embed(inputs) * math.sqrt(self.d_model)

    def initial(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Fresh (y, z) for every puzzle of x: the fixed initial vectors broadcast to (b, s, d)."""
        return self.y_init.to(x.dtype).expand_as(x), self.z_init.to(x.dtype).expand_as(x)

    def supervision_step(self, x: Tensor, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One deep-recursion step from (y, z). Returns y, z (b, s, d), logits (b, s, v), halt logit (b,)."""
        y, z = deep_recursion(self.net, x, y, z, self.hparams.n, self.hparams.T, self.hparams.one_step_gradient)
        return y, z, self.answer_head(y), self.halt_head(y.mean(dim=1)).squeeze(-1)

    def forward(self, x: Tensor, start: Optional[ReasoningOutput] = None) -> ReasoningOutput:
        """Composite use. x: (b, s, d) input tokens (sensory tokens); start: the previous round's output, whose y
        and z this round refines further (active perception), or None. Runs eval_steps supervision steps without
        halting; returns the answer tokens y (b, s, d), the halting probability (b,), the "more sensing?"
        probability (b,) of the last step and the latent z (b, s, d)."""
        if x.shape[1] != self.seq_len:
            raise EmberConfigError(f"the reasoning core is sized for seq_len={self.seq_len} positions but is given "
                                   f"{x.shape[1]} tokens (the sensory slot's tokens in the composite): set "
                                   f"model.init_args.reasoning.init_args.seq_len {x.shape[1]}")
        y, z = self.initial(x) if start is None or start.latent is None else (start.answer, start.latent)
        for _ in range(self.eval_steps):
            y, z, _, halt = self.supervision_step(x, y, z)
        return ReasoningOutput(y, torch.sigmoid(halt), torch.sigmoid(self.sense_head(y.mean(dim=1)).squeeze(-1)), z)

    def steps(self, x: Tensor, start: Optional[ReasoningOutput] = None) -> Iterator[ReasoningOutput]:
        """Deep supervision in the composite: the output after each of the eval_steps supervision steps, with y and z
        detached between steps while training (each step's loss reaches that step only, as in `training_step`)."""
        y, z = self.initial(x) if start is None or start.latent is None else (start.answer, start.latent)
        for _ in range(self.eval_steps):
            y, z, _, halt = self.supervision_step(x, y, z)
            yield ReasoningOutput(y, torch.sigmoid(halt), torch.sigmoid(self.sense_head(y.mean(dim=1)).squeeze(-1)), z)
            if torch.is_grad_enabled():
                y, z = y.detach(), z.detach()

    @property
    def eval_steps(self) -> int:
        return self._eval_steps or self.hparams.n_sup

    # ---- training: one supervision step per optimizer step on the carry ----------------------
    def refill(self, inputs: Tensor, labels: Tensor) -> Carry:
        """The carry with every halted puzzle replaced by the fresh puzzle at the same batch index."""
        b = inputs.shape[0]
        old = self._carry
        if old is None or old.inputs.shape != inputs.shape or old.inputs.device != inputs.device:
            y, z = self.initial(self.input_embedding(inputs).detach())
            zeros = torch.zeros(b, dtype=torch.long, device=inputs.device)
            return Carry(inputs, labels, y, z, zeros, torch.zeros(b, dtype=torch.bool, device=inputs.device))
        fresh = old.halted
        y0, z0 = self.initial(old.y)
        pick = lambda new, kept: torch.where(fresh.view(-1, *[1] * (new.dim() - 1)), new, kept)  # noqa: E731
        return Carry(pick(inputs, old.inputs), pick(labels, old.labels), pick(y0, old.y), pick(z0, old.z),
                     torch.where(fresh, 0, old.steps), torch.zeros_like(fresh))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        """batch: inputs, labels (b, s) int64 puzzles and their solutions."""
        # 1. the carry: puzzles that halted at the last step give their places to new ones from the batch
        carry = self.refill(batch["inputs"], batch["labels"])
        # 2. one supervision step from the carried answer y and latent z
        y, z, logits, halt_logit = self.supervision_step(self.input_embedding(carry.inputs), carry.y, carry.z)
        # 3. the loss: cross-entropy on every cell, plus BCE of the halting head on "the answer is right"
        cells_right = logits.argmax(-1) == carry.labels  # (b, s)
        correct = cells_right.all(dim=1)
        ce = F.cross_entropy(logits.float().transpose(1, 2), carry.labels)  # mean over cells and puzzles
        halt_loss = F.binary_cross_entropy_with_logits(halt_logit.float(), correct.float())
        loss = ce + self.hparams.halt_weight * halt_loss
        # 4. carry (y, z) detached to the next step; a puzzle halts at n_sup steps or when its head says so
        steps = carry.steps + 1
        halted = (steps >= self.train_n_sup) | ((halt_logit > 0) & (steps >= self._min_halt_steps(steps)))
        self._carry = Carry(carry.inputs, carry.labels, y.detach(), z.detach(), steps, halted)
        # 5. log
        self._log_training(loss, ce, halt_loss, cells_right, correct, steps, halted)
        return loss

    def _log_training(self, loss: Tensor, ce: Tensor, halt_loss: Tensor, cells_right: Tensor, correct: Tensor,
                      steps: Tensor, halted: Tensor):
        self.log_dict({"train/loss": loss, "train/ce": ce, "train/halt_loss": halt_loss,
                       "train/cell_acc": cells_right.float().mean(), "train/exact_acc": correct.float().mean(),
                       "train/halt_rate": halted.float().mean()}, prog_bar=False)
        if halted.any():
            self.log("train/steps", steps[halted].float().mean())

    @property
    def train_n_sup(self) -> int:
        """The most supervision steps a training puzzle takes now: 1 during the n_sup_warmup steps, then n_sup."""
        return 1 if self.global_step < self.hparams.n_sup_warmup else self.hparams.n_sup

    def _min_halt_steps(self, steps: Tensor) -> Tensor:
        """ACT exploration: with probability halt_explore a puzzle may not halt before a random step in 2..n_sup."""
        n_sup = self.train_n_sup
        if n_sup < 2:  # one supervision step: every puzzle halts after it, nothing to explore
            return torch.zeros_like(steps)
        explore = torch.rand(steps.shape, device=steps.device) < self.hparams.halt_explore
        return torch.where(explore, torch.randint(2, n_sup + 1, steps.shape, device=steps.device), 0)

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def think(self, inputs: Tensor, steps: int) -> Thought:
        """Run `steps` supervision steps from scratch; the answer is read at `halting_step`."""
        x = self.input_embedding(inputs)
        y, z = self.initial(x)
        preds, halts = [], []
        for _ in range(steps):
            y, z, logits, halt_logit = self.supervision_step(x, y, z)
            preds.append(logits.argmax(-1))
            halts.append(halt_logit)
        step_preds, halt_logits = torch.stack(preds, 1), torch.stack(halts, 1)  # (b, steps, s), (b, steps)
        read, used = halting_step(halt_logits, self.halt_prob)
        answer = step_preds.gather(1, read[:, None, None].expand(-1, 1, step_preds.shape[2])).squeeze(1)
        return Thought(answer, preds[-1], logits, read + 1, used, step_preds, halt_logits)

    def _evaluate(self, batch: dict, stage: str):
        labels = batch["labels"]
        thought = self.think(batch["inputs"], self.eval_steps)
        loss = F.cross_entropy(thought.final_logits.float().transpose(1, 2), labels)
        self.log_dict({f"{stage}/loss": loss,
                       f"{stage}/exact_acc": (thought.preds == labels).all(1).float().mean(),
                       f"{stage}/exact_acc_final": (thought.final_preds == labels).all(1).float().mean(),
                       f"{stage}/cell_acc": (thought.preds == labels).float().mean(),
                       f"{stage}/fill_acc": fill_accuracy(thought.preds, batch["inputs"], labels),
                       f"{stage}/steps": thought.steps_used.float().mean()},
                      prog_bar=stage == "val", sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int):
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int):
        self._evaluate(batch, "test")

    # ---- setup and optimisation --------------------------------------------------------------
    def setup(self, stage: str):
        if stage == "fit" and self.hparams.init_from:  # a --ckpt_path, restored after setup, overrides these weights
            copy_matching_weights(self, self.hparams.init_from, "model.init_args.init_from")
        data = getattr(self.trainer, "datamodule", None) if self._trainer else None
        for name in ("vocab_size", "seq_len"):
            want = getattr(data, name, None)
            if want is not None and want != getattr(self, name):
                raise EmberConfigError(f"model.init_args.{name}={getattr(self, name)} but the data has {name}={want}: "
                                       f"set --model.init_args.{name} {want}")
        if self.eval_steps > self.hparams.n_sup:
            log.info("evaluating with eval_steps=%d supervision steps, more than the n_sup=%d trained: "
                     "allowed (more thinking); the halting head was never trained past step %d",
                     self.eval_steps, self.hparams.n_sup, self.hparams.n_sup)

    def on_train_start(self):
        self._carry = None

    def configure_optimizers(self):
        hp = self.hparams
        return adamw_with_schedule(self, hp.lr, hp.weight_decay, hp.betas, hp.warmup_steps, hp.min_lr_ratio)
