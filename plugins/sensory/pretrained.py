"""PretrainedAudioEncoder: an audio encoder that starts from the weights of an AudioJEPA checkpoint.

    ember fit --config configs/sensory/jepa_audio.yaml            -> runs/.../checkpoints/best.ckpt
    sensory: {class_path: PretrainedAudioEncoder, init_args: {encoder: ..., checkpoint: that .ckpt}}

The JEPA checkpoint holds `encoder.*` (the context encoder), `target_encoder.*` (its EMA) and
`predictor.*`; one of the two encoders is copied into the wrapped encoder, which must have the
sizes it was pre-trained with. Without a checkpoint the encoder keeps its random init (the
"no pre-training" control of the sample-efficiency comparison). The weights are loaded at
construction; restoring a composite checkpoint afterwards overwrites them as usual.

Letters: b batch, t samples, s tokens, d width.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import Tensor

from ember.base import SensoryEncoder, SensoryOutput, SensoryRequest
from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.files import load_checkpoint
from ember.plugins.sensory.encoder import AudioEncoder, window

log = logging.getLogger(__name__)
JEPA_ENCODERS = ("encoder", "target_encoder")


class PretrainedAudioEncoder(SensoryEncoder):
    """An audio encoder initialised from an AudioJEPA checkpoint (random init without one), optionally frozen.

    Args:
        encoder: the audio encoder (SpikingAudioEncoder, RateAudioEncoder, ...), sized as when pre-trained.
        checkpoint: AudioJEPA checkpoint (.ckpt) to load; null keeps the random init (no pre-training).
        weights: which JEPA encoder to copy: "encoder" (the context encoder) or "target_encoder" (its EMA).
        freeze: keep the loaded encoder fixed; only its modulation head (not trained by JEPA) still learns.
    """

    def __init__(self, encoder: AudioEncoder, checkpoint: Optional[str] = None,
                 weights: Literal["encoder", "target_encoder"] = "encoder",
                 freeze: bool = False):
        super().__init__()
        if weights not in JEPA_ENCODERS:
            raise EmberConfigError(f"weights={weights!r} is unknown: use one of {JEPA_ENCODERS}")
        if freeze and checkpoint is None:
            raise EmberConfigError("freeze=true without a checkpoint would freeze a random encoder: give "
                                   "checkpoint (an AudioJEPA .ckpt) or set freeze: false")
        self.encoder, self.d_model, self.freeze = encoder, encoder.d_model, freeze
        if checkpoint is not None:
            load_jepa_encoder(encoder, checkpoint, weights)
        if freeze:
            encoder.requires_grad_(False)
            encoder.modulation_head.requires_grad_(True)

    def forward(self, signal: Tensor) -> SensoryOutput:
        """signal: (b, t) waveform -> SensoryOutput(tokens (b, s, d), modulation (b, 3)); no state."""
        return self.sense(signal, SensoryRequest())

    def sense(self, signal: Tensor, request: SensoryRequest) -> SensoryOutput:
        """The view `request` asks for (a time window, a share of the bands), as the wrapped encoder serves it."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            view = window(signal, request, self.encoder.sample_rate)
            tokens = self.encoder.encode(self.encoder.embed(view, request.bands))  # (b, s, d)
        return SensoryOutput(tokens, self.encoder.modulate(tokens))

    def spike_rate(self) -> Tensor:
        """The wrapped encoder's mean neuron output in the last forward (nan without neurons)."""
        return self.encoder.spike_rate()


def load_jepa_encoder(encoder: AudioEncoder, path: str, weights: str = "encoder") -> None:
    """Copy `<weights>.*` of an AudioJEPA checkpoint into encoder; refuse a checkpoint that does not fit, by name."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise EmberConfigError(f"sensory checkpoint={path} does not exist: pre-train the encoder first (ember fit "
                               "--config configs/sensory/jepa_audio.yaml prints its checkpoint at the end), or set "
                               "checkpoint: null for a random init")
    saved = load_checkpoint(file)
    state = saved.get("state_dict", {}) if isinstance(saved, dict) else {}
    prefix = weights + "."
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        raise CheckpointMismatchError(f"{path} holds no {prefix}* weights (keys like {sorted(state)[:2]}): it is not "
                                      "an AudioJEPA checkpoint. Give the .ckpt of `ember fit --config "
                                      "configs/sensory/jepa_audio.yaml`")
    trained_as = saved.get("ember_encoder")
    if trained_as is not None and trained_as != type(encoder).__name__:
        raise CheckpointMismatchError(f"{path} was pre-trained with a {trained_as}, but the encoder here is a "
                                      f"{type(encoder).__name__}: set encoder.class_path to {trained_as}")
    mine = encoder.state_dict()
    problems = [f"{k} missing from the checkpoint" for k in mine if k not in picked]
    problems += [f"{k} not in this encoder" for k in picked if k not in mine]
    problems += [f"{k}: checkpoint {tuple(v.shape)} vs encoder {tuple(mine[k].shape)}" for k, v in picked.items()
                 if k in mine and v.shape != mine[k].shape]
    if problems:
        raise CheckpointMismatchError(f"{path} does not fit this {type(encoder).__name__} ({len(problems)} "
                                      f"difference(s), e.g. {problems[0]}): give the encoder the sizes it was "
                                      "pre-trained with (the config.yaml saved beside the checkpoints folder)")
    encoder.load_state_dict(picked)
    log.info("sensory: %d weights of %s loaded from %s", len(picked), weights, path)
