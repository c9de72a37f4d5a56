"""ProsodyData: unknown voice sources and tasks refused, noise only for synthesized audio."""

import shutil

import pytest
import torch

from ember.data_modules.prosody import ProsodyData
from ember.errors import EmberConfigError


def test_unknown_or_missing_voice_sources_are_refused():
    with pytest.raises(EmberConfigError, match="source='bark' is unknown"):
        ProsodyData(source="bark")
    with pytest.raises(EmberConfigError, match="task='sarcasm' is unknown"):
        ProsodyData(task="sarcasm")
    if shutil.which("espeak-ng") is None:
        with pytest.raises(EmberConfigError, match="apt-get install espeak-ng"):
            ProsodyData(source="espeak")


def test_prosody_noise_is_for_synthesized_audio_and_keeps_the_label(tmp_path):
    with pytest.raises(EmberConfigError, match="snr_db"):
        ProsodyData(path=str(tmp_path), snr_db=(0.0, 10.0))
    clean = ProsodyData(seconds=0.5, val_size=4).dataset("val")[2]
    noisy = ProsodyData(seconds=0.5, val_size=4, snr_db=(0.0, 0.0)).dataset("val")[2]
    assert clean["label"] == noisy["label"] and clean["task"] == noisy["task"]
    noise = (noisy["signal"] - clean["signal"]).double()
    assert abs(10 * torch.log10(clean["signal"].double().pow(2).mean() / noise.pow(2).mean()).item()) < 1e-3
