import pytest
import torch

from ember.cli.main import main
from ember.data_modules.shard_manifest import read_manifest
from ember.data_modules.shards import ShardWindows
from ember.data_modules.text import ContiguousWindows, RandomWindows, TextBytes
from ember.errors import EmberConfigError, EmberDataError


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(bytes(range(32, 127)) * 200)  # 19,000 bytes
    return path


def test_file_split_is_contiguous_first_train_then_val(text_file):
    dm = TextBytes(path=str(text_file), seq_len=16, val_fraction=0.1)
    dm.setup("fit")
    data = torch.tensor(list(text_file.read_bytes()), dtype=torch.uint8)
    n_val = int(data.numel() * 0.1)
    assert torch.equal(dm.splits["train"], data[: data.numel() - n_val])
    assert torch.equal(dm.splits["val"], data[data.numel() - n_val :])


def test_split_bytes_needs_enough_data(text_file):
    dm = TextBytes(path=str(text_file), split_bytes=[90_000_000, 5_000_000, 5_000_000])
    with pytest.raises(EmberDataError, match="needs 100000000 bytes"):
        dm.setup("fit")


def test_folder_of_text_files_skips_binary(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 100)
    (tmp_path / "b.bin").write_bytes(b"\x00" * 500)
    dm = TextBytes(path=str(tmp_path), seq_len=8)
    dm.setup("fit")
    assert dm.splits["train"].numel() + dm.splits["val"].numel() == 600


def test_windows_are_deterministic_and_shifted_targets_line_up(text_file):
    data = torch.arange(100, dtype=torch.uint8)
    windows = RandomWindows(data, 9, 10, seed=3)
    assert torch.equal(windows[4], windows[4])
    w = windows[4]
    assert torch.equal(w[1:] - w[:-1], torch.ones(8, dtype=torch.long))
    evals = ContiguousWindows(data, 9, None)
    assert torch.equal(evals[1][0], evals[0][-1])  # window k+1 starts where window k's inputs end


@pytest.mark.parametrize("kwargs", [dict(seq_len=1), dict(val_fraction=0.0), dict(split_bytes=[1, 2])])
def test_bad_settings_name_the_fix(kwargs):
    with pytest.raises(EmberConfigError):
        TextBytes(**kwargs)


def test_shards_round_trip_and_split_by_rank(tmp_path, text_file):
    out = tmp_path / "shards"
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out),
                 "--chunk_bytes", "1000", "--shard_bytes", "3000"]) == 0
    manifest = read_manifest(out)
    assert len(manifest["train"]["shards"]) >= 4
    assert manifest["train"]["bytes"] + manifest["val"]["bytes"] == text_file.stat().st_size
    seen = []
    for rank in range(2):
        ds = ShardWindows(out, "train", 65, 20, seed=0, rank=rank, world=2)
        seen.append({bytes(w.to(torch.uint8).tolist()) for w in ds})
        assert len(list(ds)) == 20
    # each rank reads its own shards: the windows of the two ranks come from disjoint text
    owned = [set(manifest["train"]["shards"][r::2]) for r in range(2)]
    assert owned[0].isdisjoint(owned[1])
    dm = TextBytes(path=str(out), seq_len=64, batch_size=4, train_windows=8)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape == (4, 65)


def test_prepare_refuses_a_non_empty_output_and_leaves_it_untouched(tmp_path, text_file, caplog):
    out = tmp_path / "shards"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", str(out)]) == 2
    assert "not empty" in caplog.text and (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["shards", "corpus.txt"] or len(list(tmp_path.iterdir())) == 2


def test_corrupt_manifest_is_refused(tmp_path):
    (tmp_path / "ember-shards.json").write_text("{not json")
    with pytest.raises(EmberDataError, match="ember data prepare text"):
        TextBytes(path=str(tmp_path)).setup("fit")
