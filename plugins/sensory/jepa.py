"""AudioJEPA: self-supervised pre-training of an audio encoder by predicting masked time blocks (SPEC 3.4).

One training step (I-JEPA, Assran et al. 2023, on 1-D time patches):
    1. patch tokens of the whole utterance, from the context encoder and from the target encoder
    2. choose target blocks of patches; the rest is context
    3. targets: target encoder on all patches, layer-normed, at the target positions (no gradient)
    4. context: context encoder on the visible patches only
    5. predictor: context + target positions -> predicted target embeddings; smooth-L1 to the targets
The target encoder is a frozen copy of the context encoder that only the `EMATargetUpdate`
callback changes (an exponential moving average, once per optimizer step).

Letters: b batch, t samples, s patches, v visible patches, m target patches, d width.
"""

from __future__ import annotations

import copy
import logging
import math
from functools import partial

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor

from ember.base import SensoryEncoder, SensoryOutput
from ember.errors import EmberConfigError
from ember.ops.jepa import JEPAPredictor, block_mask, embedding_spread, jepa_loss
from ember.ops.stack import MAX_LAYERS
from ember.optim import check_optimizer_args, configure
from ember.plugins.sensory.encoder import AudioEncoder

log = logging.getLogger(__name__)


class AudioJEPA(SensoryEncoder):
    """JEPA pre-training of an audio encoder; as a sensory plugin it returns the context encoder's output.

    Logs train/loss, val/loss, jepa/collapse_std (spread of the target embeddings; a warning when it
    falls below collapse_threshold, and jepa/collapsed = 1) and sensory/spike_rate. Add the
    `EMATargetUpdate` callback to trainer.callbacks, or the target encoder never moves.

    Args:
        encoder: the context encoder (SpikingAudioEncoder or RateAudioEncoder); the target is its copy.
        predictor_width: width of the predictor transformer.
        predictor_depth: layers of the predictor.
        predictor_heads: attention heads of the predictor (predictor_width must be divisible by it).
        mask_blocks: target blocks per utterance (they may overlap).
        block_len: patches per target block.
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warmup, in optimizer steps.
        collapse_threshold: jepa/collapse_std below this is reported as a representation collapse.
    """

    def __init__(self, encoder: AudioEncoder, predictor_width: int = 64, predictor_depth: int = 2,
                 predictor_heads: int = 4, mask_blocks: int = 4, block_len: int = 3, lr: float = 1e-3,
                 weight_decay: float = 0.04, warmup_steps: int = 100, collapse_threshold: float = 0.05):
        super().__init__()
        if min(predictor_width, predictor_heads) < 1 or predictor_width % predictor_heads:
            raise EmberConfigError(f"predictor_width={predictor_width} is not divisible by "
                                   f"predictor_heads={predictor_heads}")
        if mask_blocks < 1 or block_len < 1:
            raise EmberConfigError(f"mask_blocks={mask_blocks} and block_len={block_len} must be >= 1")
        if not 1 <= predictor_depth <= MAX_LAYERS or not 0 <= collapse_threshold < math.inf:
            raise EmberConfigError(f"predictor_depth={predictor_depth} must be in 1..{MAX_LAYERS} and "
                                   f"collapse_threshold={collapse_threshold} finite and >= 0")
        check_optimizer_args(lr, weight_decay, warmup_steps=warmup_steps)
        self.save_own_hyperparameters(ignore=["encoder"])
        self.encoder = encoder
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.predictor = JEPAPredictor(encoder.d_model, predictor_width, predictor_depth, predictor_heads)
        self.d_model = encoder.d_model
        self.mask_blocks, self.block_len = mask_blocks, block_len
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self.collapse_threshold = collapse_threshold
        self._collapsed = False

    def forward(self, signal: Tensor) -> SensoryOutput:
        """signal: (b, t) waveform -> the context encoder's SensoryOutput(tokens (b, s, d), modulation (b, 3))."""
        return self.encoder(signal)

    def jepa_step(self, signal: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """signal: (b, t) -> (loss, target embeddings (b, s, d) before layer norm, detached)."""
        # 1. patch tokens of the whole utterance
        patches = self.encoder.embed(signal)  # (b, s, d)
        # 2. target blocks and context
        context_idx, target_idx = block_mask(patches.shape[1], self.mask_blocks, self.block_len, generator,
                                             patches.device)
        # 3. targets from the frozen target encoder
        with torch.no_grad():
            targets = self.target_encoder.encode(self.target_encoder.embed(signal))  # (b, s, d)
        # 4. context encoder on the visible patches
        context = self.encoder.encode(patches[:, context_idx])  # (b, v, d)
        # 5. predict the targets and compare
        prediction = self.predictor(context, context_idx, target_idx)  # (b, m, d)
        return jepa_loss(prediction, targets[:, target_idx]), targets

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss, targets = self.jepa_step(_signal(batch))
        spread = embedding_spread(targets)
        self.log("train/loss", loss, prog_bar=True)
        self.log("jepa/collapse_std", spread)
        self.log("jepa/collapsed", float(self._flag_collapse(float(spread))))
        self.log("sensory/spike_rate", self.encoder.spike_rate())
        return loss

    def validation_step(self, batch, batch_idx: int):
        generator = torch.Generator().manual_seed(batch_idx)  # the same masks at every validation
        loss, targets = self.jepa_step(_signal(batch), generator)
        self.log("val/loss", loss, prog_bar=True)
        self.log("val/collapse_std", embedding_spread(targets))
        self.log("val/spike_rate", self.encoder.spike_rate())

    def _flag_collapse(self, spread: float) -> bool:
        """Warn once each time the spread falls below the threshold; returns whether it is below."""
        collapsed = spread < self.collapse_threshold
        if collapsed and not self._collapsed:
            log.warning("representation collapse at step %d: jepa/collapse_std=%.4f < collapse_threshold=%.4f "
                        "(the target embeddings barely differ). Lower lr, raise the EMA start momentum, or "
                        "mask more blocks.", self.global_step, spread, self.collapse_threshold)
        self._collapsed = collapsed
        return collapsed

    def on_fit_start(self):
        # plugins do not import callbacks: EMATargetUpdate (and any stand-in) declares itself by this flag
        if not any(getattr(cb, "moves_target_encoder", False) for cb in self.trainer.callbacks):
            rank_zero_warn("AudioJEPA trains without EMATargetUpdate: the target encoder stays at its "
                           "initialisation. Add `- class_path: EMATargetUpdate` to trainer.callbacks.")

    def on_save_checkpoint(self, checkpoint: dict):
        """Record the encoder class, so PretrainedAudioEncoder refuses a spiking/rate mix-up by name."""
        checkpoint["ember_encoder"] = type(self.encoder).__name__

    def configure_optimizers(self):
        """AdamW (weight decay on every parameter) with a linear warm-up; `--optimizer` / `--lr_scheduler` on the
        command line replace either (ember.optim.configure)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return configure(self, lambda _: torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay),
                         lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, partial(warmup, steps=self.warmup_steps)),
                         self.weight_decay)


def warmup(step: int, steps: int) -> float:
    """Learning-rate factor: linear from 1/steps to 1 over `steps` optimizer steps, then 1 (pure in step)."""
    return 1.0 if steps <= 0 else min(1.0, (step + 1) / steps)


def _signal(batch) -> Tensor:
    """The (b, t) waveform of a batch: a dict with "signal" (ProsodyData, AudioShards) or the tensor itself."""
    return batch["signal"] if isinstance(batch, dict) else batch
