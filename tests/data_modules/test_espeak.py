"""espeak-ng voices (data_modules/espeak.py), where the program is installed."""

import shutil

import pytest

from ember.data_modules.audio import check_audio
from ember.data_modules.prosody import ProsodyData
from helpers import SR


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_ng_audio_passes_the_checks():
    from ember.data_modules.espeak import espeak_utterance

    x = espeak_utterance("you are going home", SR)
    assert check_audio(x, SR).shape == x.shape
    batch = next(iter(ProsodyData(source="espeak", seconds=1.5, batch_size=2, val_size=2).val_dataloader()))
    assert batch["signal"].shape == (2, 24000)
