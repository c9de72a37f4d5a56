"""Audio shards: `ember data prepare audio-prosody` writes what ProsodyData reads; broken audio is named."""

import shutil

import numpy as np
import pytest
import torch

from ember.data_modules.audio_shards import prepare_prosody_shards, read_audio_split
from ember.data_modules.prosody import ProsodyData
from ember.data_modules.prosody_tasks import make_example
from ember.errors import EmberConfigError, EmberDataError
from helpers import SR, run_cli, serve_folder


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


def test_audio_shards_read_over_a_folder_url_a_pattern_and_a_pipe_and_write_to_a_pipe(tmp_path):
    out = tmp_path / "prosody"
    prepare_prosody_shards(out, size=6, seconds=0.5, shard_samples=2)
    local = {split: read_audio_split(out, split) for split in ("train", "val")}
    train = "train-{000000..000002}.tar"  # 5 train utterances, 2 a shard
    piped = ProsodyData(path=f"pipe:cat {out}/{train}", val_path=f"pipe:cat {out}/val-000000.tar", seconds=0.5)
    with serve_folder(out) as base:
        sources = {"folder URL": ProsodyData(path=base, seconds=0.5), "pipe": piped,
                   "pattern": ProsodyData(path=f"{base}/{train}", val_path=f"{base}/val-000000.tar", seconds=0.5)}
        read = {name: {split: dm.dataset(split).examples for split in ("train", "val")} for name, dm in sources.items()}
    for name, splits in read.items():
        for split, examples in splits.items():
            assert len(examples) == len(local[split]) and all(
                np.array_equal(a.signal, b.signal) and a.label == b.label for a, b in zip(examples, local[split])), name
    with pytest.raises(EmberConfigError, match="give data.val_path"):
        ProsodyData(path=f"pipe:cat {out}/train-000000.tar")
    written = tmp_path / "written"
    written.mkdir()
    prepare_prosody_shards(f"pipe:cat > {written}/{{name}}", size=6, seconds=0.5, shard_samples=2)
    assert [e.label for e in read_audio_split(written, "train")] == [e.label for e in local["train"]]
