"""Text shards: `ember data prepare text` writes them, ShardWindows and TextBytes read them, the manifest."""

import os
import re
import stat

import pytest
import torch

from ember import files
from ember.cli.main import main
from ember.data_modules.shard_manifest import read_manifest, shard_splits
from ember.data_modules.shards import ShardWindows
from ember.data_modules.text import TextBytes
from ember.errors import EmberDataError


def test_shards_round_trip_and_split_by_rank(tmp_path, text_file):
    out = tmp_path / "shards"
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out),
                 "--chunk_bytes", "1000", "--shard_bytes", "3000"]) == 0
    manifest = read_manifest(out)
    assert len(manifest["train"]["shards"]) >= 4
    assert manifest["train"]["bytes"] + manifest["val"]["bytes"] == text_file.stat().st_size
    seen = []
    for rank in range(2):
        ds = ShardWindows(shard_splits(out)["train"], 65, 20, seed=0, rank=rank, world=2)
        seen.append({bytes(w.to(torch.uint8).tolist()) for w in ds})
        assert len(list(ds)) == 20
    # each rank reads its own shards: the windows of the two ranks come from disjoint text
    owned = [set(manifest["train"]["shards"][r::2]) for r in range(2)]
    assert owned[0].isdisjoint(owned[1])
    dm = TextBytes(path=str(out), seq_len=64, batch_size=4, train_windows=8)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape == (4, 65)


def test_windows_mix_the_samples_of_a_pool_instead_of_cutting_a_batch_from_one_sample(tmp_path):
    """Each 1000-byte sample holds one letter: the letters of the first 15 windows (a sample's share: 1000 // 65)
    say which samples they came from."""
    text = tmp_path / "letters.txt"
    text.write_bytes(b"".join(bytes([97 + i % 26]) * 1000 for i in range(40)))
    out = tmp_path / "shards"
    assert main(["data", "prepare", "text", "--input", str(text), "--out", str(out), "--chunk_bytes", "1000",
                 "--shard_bytes", "1000000"]) == 0
    train = shard_splits(out)["train"]

    def first_letters(pool: int) -> set[int]:
        windows = iter(ShardWindows(train, 65, 64, seed=0, rank=0, world=1, pool=pool))
        return {int(next(windows)[0]) for _ in range(15)}

    assert first_letters(pool=1) == {97}  # one sample at a time: a batch is cut from the first sample alone
    assert len(first_letters(pool=16)) >= 6  # from a pool of 16 samples
    with pytest.raises(EmberDataError, match="pool=0 must be >= 1"):
        ShardWindows(train, 65, 64, seed=0, rank=0, world=1, pool=0)


def test_prepare_refuses_a_non_empty_output_and_leaves_it_untouched(tmp_path, text_file, caplog):
    out = tmp_path / "shards"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out)]) == 2
    assert "not empty" in caplog.text and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "shards"]  # no temporary folder left


@pytest.mark.parametrize("out", [".", "inside"])
def test_prepare_never_writes_over_its_own_input(tmp_path, caplog, out):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("keep me " * 500)
    target = notes if out == "." else notes / "shards"
    assert main(["data", "prepare", "text", "--input", str(notes), "--out", str(target), "--overwrite"]) == 2
    assert "would replace the input" in caplog.text
    assert (notes / "a.txt").read_text() == "keep me " * 500 and sorted(p.name for p in notes.iterdir()) == ["a.txt"]


def test_prepared_folder_gets_the_usual_mode_not_a_private_one(tmp_path, text_file):
    umask = os.umask(0o022)
    try:
        assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(tmp_path / "s")]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o755


def test_corrupt_manifest_is_refused(tmp_path):
    (tmp_path / "ember-shards.json").write_text("{not json")
    with pytest.raises(EmberDataError, match="ember data prepare text"):
        TextBytes(path=str(tmp_path)).setup("fit")


def test_a_truncated_shard_is_one_message_naming_it(tmp_path, text_file):
    out = tmp_path / "shards"
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out), "--chunk_bytes", "1000",
                 "--shard_bytes", "3000"]) == 0
    shard = out / read_manifest(out)["train"]["shards"][0]
    shard.write_bytes(shard.read_bytes()[:700])
    message = rf"shard {re.escape(str(shard))} cannot be read .*`ember data prepare text"
    with pytest.raises(EmberDataError, match=message):
        TextBytes(path=str(out)).setup("fit")


@pytest.mark.parametrize("fails", ["chmod", "deleting the previous folder"])
def test_a_failed_file_operation_while_replacing_shards(fails, tmp_path, text_file, caplog, monkeypatch):
    """Found by the fuzz suite (tests/cli/test_fuzz_faults.py): a failed chmod of the new folder left it behind, and
    a previous folder that could not be deleted after the new one took its name failed a replacement that was done."""
    out = tmp_path / "shards"
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied (injected)")

    if fails == "chmod":
        monkeypatch.setattr(os, "chmod", refuse)
    else:
        monkeypatch.setattr(files.shutil, "rmtree", refuse)
    code = main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out), "--chunk_bytes", "1000",
                 "--overwrite"])
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    if fails == "chmod":
        assert code == 2 and "Permission denied" in caplog.text
        assert sorted(p.name for p in out.iterdir()) == before and not left  # the old shards, no temporary folder
    else:
        assert code == 0 and "could not be deleted" in caplog.text and len(left) == 1  # the previous copy, named
        assert read_manifest(out)["chunk_bytes"] == 1000  # the new shards
