"""Audio checks (data_modules/audio.py): bad audio refused or flagged, other sample rates resampled."""

import logging

import numpy as np
import pytest

from ember.data_modules.audio import check_audio, decode_wav, encode_wav, resample
from ember.errors import EmberDataError
from helpers import SR, f0_estimate, tone


def test_bad_audio_is_refused_or_flagged(caplog):
    with pytest.raises(EmberDataError, match="NaN"):
        check_audio(np.array([0.1, np.nan, 0.2], np.float32), SR)
    with pytest.raises(EmberDataError, match="silent"):
        check_audio(np.zeros(SR, np.float32), SR)
    with pytest.raises(EmberDataError, match="mono"):
        check_audio(np.zeros((2, SR), np.float32), SR)
    with caplog.at_level(logging.WARNING):
        check_audio(np.clip(tone(200, amp=2.0), -1, 1), SR)
    assert "clipped" in caplog.text
    with pytest.raises(EmberDataError, match="not a PCM WAV"):
        decode_wav(b"ID3 this is an mp3, honest", "song.mp3")


def test_other_sample_rates_are_resampled_or_refused():
    x = tone(440.0, rate=22050)
    with pytest.raises(EmberDataError, match="22050 Hz"):
        check_audio(x, 22050, SR, allow_resample=False)
    y = check_audio(x, 22050, SR)
    assert len(y) == SR and abs(f0_estimate(y[:4000]) - 440.0) < 5.0
    assert np.allclose(resample(y, SR, SR), y)
    back, rate = decode_wav(encode_wav(y, SR))
    assert rate == SR and np.abs(back - y).max() < 1e-4


@pytest.mark.parametrize("damage", ["fmt chunk size", "truncated mid-frame", "rate zero"])
def test_a_damaged_wav_is_refused_with_one_message(damage):
    """Found by the fuzz suite (tests/cli/test_fuzz_data.py): these raised RuntimeError, ValueError or
    ZeroDivisionError instead of EmberDataError."""
    data = bytearray(encode_wav(tone(220.0, seconds=0.05), SR))
    if damage == "fmt chunk size":
        data[16] ^= 0x40  # the fmt chunk claims more bytes than the file holds: wave's seek raises RuntimeError
    elif damage == "rate zero":
        data[24:28] = bytes(4)
    else:
        data = data[:-1]  # half a 16-bit frame at the end
    if damage == "truncated mid-frame":
        x, rate = decode_wav(bytes(data))
        assert rate == SR and len(x) == int(0.05 * SR) - 1
        return
    with pytest.raises(EmberDataError, match="not a PCM WAV file|not an audio rate"):
        decode_wav(bytes(data))
