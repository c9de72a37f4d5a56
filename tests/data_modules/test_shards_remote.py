"""Shards over the network (data_modules/remote.py): a folder URL, brace patterns and pipe: URLs read what the local
folder holds, split by rank and worker; bad, missing and unreachable shards are named by their URL; `ember data
prepare text --out pipe:...` writes through a command. Every server is a loopback one (helpers.serve_folder)."""

import re
import socket
import time
from types import SimpleNamespace

import pytest
import torch

from ember.cli.main import main
from ember.data_modules import remote, shards
from ember.data_modules.shard_manifest import read_manifest, shard_splits
from ember.data_modules.shards import ShardWindows, prepare_text_shards, text_samples
from ember.data_modules.text import TextBytes
from ember.errors import EmberConfigError, EmberDataError
from helpers import serve_folder


@pytest.fixture
def folder(tmp_path, text_file):
    """A text shard folder of 6 train shards and 1 val shard."""
    out = tmp_path / "shards"
    prepare_text_shards([text_file], out, chunk_bytes=1000, shard_bytes=3000)
    return out


def pattern(prefix: str, count: int) -> str:
    return f"{prefix}train-{{000000..{count - 1:06d}}}.tar"


def train_batches(dm: TextBytes) -> list[torch.Tensor]:
    dm.setup("fit")
    return list(dm.train_dataloader())


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_folder_url_reads_what_the_folder_holds(folder):
    local = TextBytes(path=str(folder), seq_len=64, batch_size=4, train_windows=40)
    with serve_folder(folder) as base:
        served = TextBytes(path=base, seq_len=64, batch_size=4, train_windows=40)
        batches = train_batches(served)
        manifest_url = TextBytes(path=f"{base}/ember-shards.json", seq_len=64, batch_size=4, train_windows=40)
        assert all(torch.equal(a, b) for a, b in zip(train_batches(manifest_url), batches))
    expected = train_batches(local)
    assert len(batches) == len(expected) == 10
    assert all(torch.equal(a, b) for a, b in zip(batches, expected))
    assert torch.equal(served.splits["val"], local.splits["val"]) and served.unigram_bpb == local.unigram_bpb


def test_a_brace_pattern_and_a_pipe_read_the_same_samples(folder):
    count = len(read_manifest(folder)["train"]["shards"])
    local = list(text_samples(shard_splits(folder)["train"]))
    with serve_folder(folder) as base:
        url = pattern(f"{base}/", count)
        assert list(text_samples(remote.expand_shard_urls(url))) == local
        over_http = TextBytes(path=url, val_path=f"{base}/val-000000.tar", seq_len=64, batch_size=4, train_windows=40)
        batches = train_batches(over_http)
    piped = pattern(f"pipe:cat {folder}/", count)
    assert list(text_samples(remote.expand_shard_urls(piped))) == local
    by_pipe = TextBytes(path=piped, val_path=f"pipe:cat {folder}/val-000000.tar", seq_len=64, batch_size=4,
                        train_windows=40)
    expected = train_batches(TextBytes(path=str(folder), seq_len=64, batch_size=4, train_windows=40))
    for dm, got in ((over_http, batches), (by_pipe, train_batches(by_pipe))):
        assert all(torch.equal(a, b) for a, b in zip(got, expected)) and len(got) == len(expected)
        assert dm.splits["val"].numel() == read_manifest(folder)["val"]["bytes"]


def test_two_ranks_of_two_workers_split_the_shards_without_overlap(folder, monkeypatch):
    requests = []
    names = read_manifest(folder)["train"]["shards"]
    read = {}
    with serve_folder(folder, requests) as base:
        urls = shard_splits(base)["train"]
        for rank in range(2):
            for worker in range(2):
                info = SimpleNamespace(num_workers=2, id=worker)
                monkeypatch.setattr(shards, "get_worker_info", lambda info=info: info)
                requests.clear()
                assert len(list(ShardWindows(urls, 65, 200, seed=0, rank=rank, world=2))) == 100  # 200 / 2 workers
                read[rank * 2 + worker] = {r.split()[0].lstrip("/") for r in requests}
    assert all(read[r] == set(names[r::4]) for r in range(4))  # reader r = rank * workers + worker owns r, r+4, ...
    assert set().union(*read.values()) == set(names) and sum(map(len, read.values())) == len(names)


@pytest.mark.parametrize("bad_shards", ["stop", "skip"])
def test_a_garbage_shard_is_named_by_its_url(folder, bad_shards, caplog):
    garbage = read_manifest(folder)["train"]["shards"][1]
    (folder / garbage).write_bytes(b"not a tar file " * 500)
    with serve_folder(folder) as base:
        urls = shard_splits(base)["train"]
        dm = TextBytes(path=base, seq_len=64, batch_size=4, train_windows=400, bad_shards=bad_shards)
        if bad_shards == "stop":
            with pytest.raises(EmberDataError, match=rf"^shard {re.escape(urls[1])} cannot be read \(invalid header\):"
                                                     r" .*ember data prepare text.*data.bad_shards: skip"):
                train_batches(dm)
            return
        batches = train_batches(dm)
        kept = [u for u in urls if u != urls[1]]
        expected = list(ShardWindows(kept, 65, 400, seed=0, rank=0, world=1))
    assert f"skipping a shard: shard {urls[1]} cannot be read (invalid header)" in caplog.text
    assert torch.equal(torch.cat(batches), torch.stack(expected))  # the other shards' windows, in order


def test_a_port_nothing_listens_on_fails_fast_with_one_message():
    base = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(EmberDataError, match=rf"^cannot reach {base}/shards/ember-shards.json \(.*refused.*\): start "
                                             "the server"):
        TextBytes(path=f"{base}/shards").setup("fit")
    with pytest.raises(EmberDataError, match=rf"^shard {base}/val-000000.tar cannot be read \(nothing accepts "
                                             r"connections at its host and port\): check that the server is up"):
        TextBytes(path=pattern(f"{base}/", 2), val_path=f"{base}/val-000000.tar").setup("fit")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("bad_shards", ["stop", "skip"])
def test_a_pattern_matching_no_served_file_is_one_message(folder, bad_shards):
    with serve_folder(folder) as base:
        dm = TextBytes(path=pattern(f"{base}/nothing-", 3), val_path=f"{base}/val-000000.tar", bad_shards=bad_shards)
        first = rf"shard {base}/nothing-train-000000.tar cannot be read \(the server answered with an HTTP error \(404"
        with pytest.raises(EmberDataError, match=("^" if bad_shards == "stop" else "^none of the 3 shard.* ") + first):
            dm.setup("fit")


def test_a_shard_url_source_is_checked_at_construction(folder):
    with pytest.raises(EmberConfigError, match="give data.val_path"):
        TextBytes(path="https://host/shards/train-{000000..000003}.tar")
    with pytest.raises(EmberConfigError, match="drop data.val_path"):
        TextBytes(path=str(folder), val_path="https://host/shards/val-000000.tar")
    with pytest.raises(EmberConfigError, match="stream from s3:// with a pipe, e.g. 'pipe:aws s3 cp"):
        TextBytes(path="s3://bucket/shards")
    with pytest.raises(EmberConfigError, match="bad_shards='drop' must be 'stop'"):
        TextBytes(path=str(folder), bad_shards="drop")
    with pytest.raises(EmberConfigError, match="expands to .*not http"):
        TextBytes(path="pipe:cat a.tar::b.tar", val_path="https://host/val-{0..1}.tar")
    command = remote.open_url("http://127.0.0.1:1/a.tar")
    assert command.startswith("pipe:curl ") and "--connect-timeout 10" in command and "--speed-time 60" in command


def test_prepare_out_pipe_round_trips(tmp_path, text_file, folder):
    written = tmp_path / "written"
    written.mkdir()
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", f"pipe:cat > {written}/{{name}}",
                 "--chunk_bytes", "1000", "--shard_bytes", "3000"]) == 0
    assert read_manifest(written) == read_manifest(folder)
    for split in ("train", "val"):
        assert list(text_samples(shard_splits(written)[split])) == list(text_samples(shard_splits(folder)[split]))


@pytest.mark.parametrize("out, message", [
    ("pipe:cat > {folder}/all.tar", "has no {name}: a pipe: command runs once per file"),
    ("pipe:cat > {folder}/missing/{{name}}", r"failed \(a command (exited with status 2|stopped before reading all "
                                             r"its input: \[Errno 32\] Broken pipe)\): run the command in a shell"),
    ("http://127.0.0.1:1/shards", "upload over HTTP with a pipe such as 'pipe:curl -fsT - http"),
], ids=["no-name", "failing-command", "http"])
def test_prepare_out_that_cannot_be_written_is_one_message(tmp_path, text_file, caplog, out, message):
    out = out.format(folder=tmp_path)
    assert main(["data", "prepare", "text", "--input", str(text_file), "--out", out]) == 2
    assert re.search(message, caplog.text) and "ember-shards.json" not in {p.name for p in tmp_path.rglob("*")}


@pytest.mark.slow
def test_a_server_that_accepts_and_never_answers_times_out(folder, monkeypatch):
    monkeypatch.setattr(remote, "CONNECT_TIMEOUT_S", 1)
    monkeypatch.setattr(remote, "STALL_TIMEOUT_S", 1)
    monkeypatch.setattr(remote, "CURL_RETRIES", 0)
    with socket.socket() as silent:  # listens (the kernel completes connections) and never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(EmberDataError, match=rf"^cannot reach {base}/shards/ember-shards.json"):
            TextBytes(path=f"{base}/shards").setup("fit")
        with pytest.raises(EmberDataError, match=r"timed out: no connection within 1 s or no data for 1 s"):
            list(text_samples([f"{base}/train-000000.tar"]))
        assert time.monotonic() - start < 10


def test_dataloader_workers_read_a_folder_url(folder):
    with serve_folder(folder) as base:
        dm = TextBytes(path=base, seq_len=64, batch_size=4, train_windows=40, num_workers=2)
        batches = train_batches(dm)
    assert len(batches) == 10 and all(b.shape == (4, 65) for b in batches)
