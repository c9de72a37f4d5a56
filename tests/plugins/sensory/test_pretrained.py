"""PretrainedAudioEncoder: loads AudioJEPA weights, freezes them, refuses a checkpoint that does not fit."""

import pytest
import torch

from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.model import EmberModel
from ember.plugins.sensory.encoder import RateAudioEncoder, SpikingAudioEncoder
from ember.plugins.sensory.jepa import AudioJEPA
from ember.plugins.sensory.pretrained import PretrainedAudioEncoder
from helpers import SMALL_AUDIO_ENCODER as SMALL
from helpers import binding_backbone as backbone


def _jepa_checkpoint(path, encoder) -> str:
    jepa = AudioJEPA(encoder, predictor_width=16, predictor_depth=1)
    checkpoint = {"state_dict": jepa.state_dict()}
    jepa.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return str(path)


def test_pretrained_encoder_loads_the_jepa_weights_and_can_be_frozen(tmp_path):
    torch.manual_seed(0)
    source = SpikingAudioEncoder(**SMALL)
    path = _jepa_checkpoint(tmp_path / "jepa.ckpt", source)
    wrapped = PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=path, freeze=True)
    for (k, v), (k2, v2) in zip(source.state_dict().items(), wrapped.encoder.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.modulation_head.weight", "encoder.modulation_head.bias"}
    signal = torch.randn(2, 4000)
    torch.testing.assert_close(wrapped(signal).tokens, source(signal).tokens)
    assert not wrapped(signal).tokens.requires_grad


def test_pretrained_encoder_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    with pytest.raises(EmberConfigError, match="does not exist: pre-train the encoder first"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=str(tmp_path / "missing.ckpt"))
    composite = tmp_path / "composite.ckpt"
    torch.save({"state_dict": EmberModel(backbone(), sensory=SpikingAudioEncoder(**SMALL)).state_dict()}, composite)
    with pytest.raises(CheckpointMismatchError, match="holds no encoder.. weights.*not an AudioJEPA checkpoint"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=str(composite))
    wider = _jepa_checkpoint(tmp_path / "wide.ckpt", SpikingAudioEncoder(**{**SMALL, "channels": 8}))
    with pytest.raises(CheckpointMismatchError, match="does not fit this SpikingAudioEncoder.*sizes it was pre-"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=wider)
    rate = _jepa_checkpoint(tmp_path / "rate.ckpt", RateAudioEncoder(**SMALL))
    with pytest.raises(CheckpointMismatchError, match="pre-trained with a RateAudioEncoder.*set encoder.class_path"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=rate)
    with pytest.raises(EmberConfigError, match="freeze=true without a checkpoint"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), freeze=True)
