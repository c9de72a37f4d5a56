"""Audio shards: `ember data prepare audio-prosody` writes what ProsodyData reads; broken audio is named."""

import shutil

import numpy as np
import pytest
import torch

from ember.data_modules.audio_shards import prepare_prosody_shards, read_audio_split
from ember.data_modules.prosody import ProsodyData
from ember.data_modules.prosody_tasks import make_example
from ember.errors import EmberDataError
from helpers import SR, run_cli


def test_prepare_audio_prosody_writes_shards_the_data_module_reads(tmp_path):
    out = tmp_path / "prosody"
    assert run_cli("data", "prepare", "audio-prosody", "--out", str(out), "--size", "6", "--seed", "3",
                   "--seconds", "1.0") == 0
    again = prepare_prosody_shards(tmp_path / "again", size=6, seed=3, seconds=1.0)
    assert again["train"]["samples"] == 5 and again["val"]["samples"] == 1
    train = read_audio_split(out, "train")
    assert all(np.array_equal(a.signal, b.signal) for a, b in zip(train, read_audio_split(tmp_path / "again", "train")))
    first = make_example(np.random.default_rng([3, 0, 0]), seconds=1.0)
    assert train[0].task == first.task and train[0].label == first.label
    assert np.abs(train[0].signal - first.signal).max() < 1e-4  # 16-bit PCM
    dm = ProsodyData(path=str(out), seconds=1.0, batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["signal"].shape == (2, SR) and batch["signal"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and len(batch["task"]) == 2
    with pytest.raises(EmberDataError, match="not empty"):
        prepare_prosody_shards(out, size=6)


def test_stored_audio_that_is_broken_is_named(tmp_path):
    import tarfile

    out = tmp_path / "bad"
    prepare_prosody_shards(out, size=4, seconds=0.5)
    shard = out / "val-000000.tar"
    with tarfile.open(shard, "w") as tar:  # replace the val shard by one whose audio is not audio
        info = tarfile.TarInfo("000000000.wav")
        info.size = 9
        tar.addfile(info, __import__("io").BytesIO(b"not a wav"))
        for name, data in (("000000000.cls", b"0"), ("000000000.task", b"question")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    with pytest.raises(EmberDataError, match="000000000.*not a PCM WAV"):
        read_audio_split(out, "val")
    text_shards = tmp_path / "text"
    shutil.copytree(out, text_shards)
    (text_shards / "ember-shards.json").write_text('{"format": 1, "train": {"shards": []}, "val": {"shards": []}}')
    with pytest.raises(EmberDataError, match="audio-prosody"):
        read_audio_split(text_shards, "train")
