"""Text as webdataset shards: `ember data prepare text` writes them, TextBytes reads them.

Layout of a shard folder:
    ember-shards.json          manifest: format, splits, shard names, bytes and samples per split
    train-000000.tar ...       samples {"__key__", "txt": a chunk of raw bytes}
    val-000000.tar ...

The folder can be local or served over http(s), and the shards can be given as webdataset URLs
(data_modules/remote.py); TextBytes' data.path takes any of:
    /data/shards                                   a folder `ember data prepare text --out` wrote
    http://host:8000/shards                        a folder URL serving that folder
    https://host/shards/train-{000000..000099}.tar a brace pattern of train shards, with data.val_path
                                                   https://host/shards/val-{000000..000009}.tar
    pipe:aws s3 cp s3://bucket/train-{000000..000099}.tar -
                                                   a pipe per shard (S3, GCS, ...), with data.val_path a pipe too
`ember data prepare text --out` takes a folder or `pipe:COMMAND` with {name} (one run per file, the
manifest last): `--out 'pipe:aws s3 cp - s3://bucket/shards/{name}'`.

Reading splits the shard list explicitly by (trainer rank, DataLoader worker): Lightning's
launchers set no RANK variable, so webdataset's own node splitter would hand every rank
every shard. With fewer shards than readers, readers split the samples instead. A shard that
cannot be read is named by its URL; data.bad_shards decides whether training stops or skips it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from ember.data_modules.corpus import read_text_files
from ember.data_modules.remote import is_url, shard_samples
from ember.data_modules.shard_manifest import FORMAT, MANIFEST, ShardOut, check_output, shard_output, shard_splits
from ember.errors import EmberDataError

log = logging.getLogger(__name__)
REWRITE = "write the shards again with `ember data prepare text --input <your text> --out <a new folder>`"
SKIP_HINT = "; or set data.bad_shards: skip to train on without unreadable shards (each is logged)"


def prepare_text_shards(inputs: list[Path], out: Path | str, chunk_bytes: int = 1 << 16, shard_bytes: int = 1 << 28,
                        val_fraction: float = 0.1, overwrite: bool = False) -> dict:
    """Write text files as train/val shards into `out` and return the manifest.

    The concatenated text is split contiguously: the first (1 - val_fraction) train, the rest validate.

    Args:
        inputs: text files or folders of them.
        out: a folder (built in a temporary folder, then renamed; new or empty unless overwrite), or a
            `pipe:COMMAND` holding {name}, run once per file with the file on its stdin (the manifest last), e.g.
            `pipe:aws s3 cp - s3://bucket/shards/{name}`.
        chunk_bytes: bytes per sample.
        shard_bytes: maximum bytes per shard file.
        val_fraction: trailing share of the text kept for validation.
        overwrite: replace a non-empty folder (a pipe's command decides for itself).
    """
    _check_inputs(inputs, out)
    check_output(out, overwrite)
    if chunk_bytes < 1 or shard_bytes < 1:
        raise EmberDataError(f"chunk_bytes={chunk_bytes} and shard_bytes={shard_bytes} must be >= 1")
    if not 0 < val_fraction < 1:
        raise EmberDataError(f"val_fraction={val_fraction} must be in (0, 1)")
    data = _read_inputs(inputs)
    n_val = max(1, int(len(data) * val_fraction))
    with shard_output(out) as sink:
        manifest = {"format": FORMAT, "chunk_bytes": chunk_bytes,
                    "train": _write_split(sink, "train", data[: len(data) - n_val], chunk_bytes, shard_bytes),
                    "val": _write_split(sink, "val", data[len(data) - n_val :], chunk_bytes, shard_bytes)}
        sink.write(MANIFEST, json.dumps(manifest, indent=2).encode())
    log.info("wrote %d train and %d val shard(s) to %s", len(manifest["train"]["shards"]),
             len(manifest["val"]["shards"]), out)
    return manifest


def _check_inputs(inputs: list[Path], out: Path | str):
    """--overwrite replaces a folder --out as a whole: it must not hold (or be) what is read."""
    if is_url(out):
        return
    for path in inputs:
        inside, holds = Path(path).resolve(), Path(out).resolve()
        if inside == holds or holds in inside.parents or inside in holds.parents:
            raise EmberDataError(f"--out {out} is, holds or lies inside the input {path}: writing it would replace the "
                                 "input. Choose an --out outside the inputs")


def _read_inputs(inputs: list[Path]) -> bytes:
    return b"\n".join(read_text_files(Path(p)) for p in inputs)


def _write_split(sink: ShardOut, split: str, data: bytes, chunk_bytes: int, shard_bytes: int) -> dict:
    written = []  # ShardWriter calls post with each shard it finishes
    with wds.ShardWriter(sink.pattern(split), maxsize=shard_bytes, verbose=0, post=written.append) as shards:
        samples = 0
        for i, start in enumerate(range(0, len(data), chunk_bytes)):
            shards.write({"__key__": f"{i:09d}", "txt": data[start : start + chunk_bytes]})
            samples += 1
    return {"shards": [f"{split}-{i:06d}.tar" for i in range(len(written))], "bytes": len(data), "samples": samples}


def text_samples(urls: list[str], bad_shards: str = "stop",
                 skipped: Optional[dict[str, str]] = None) -> Iterator[bytes]:
    """The text chunk of every sample of the shards at `urls` (paths or URLs), in order; bad_shards and skipped
    as data_modules/remote.py's shard_samples."""
    for sample in shard_samples(urls, REWRITE, bad_shards, ("txt",), SKIP_HINT, skipped):
        yield sample["txt"]


def read_split_bytes(folder: Path | str, split: str, max_bytes: Optional[int] = None) -> torch.Tensor:
    """All bytes of a split of a shard folder or folder URL, or its first max_bytes, as a uint8 tensor."""
    return read_shard_bytes(shard_splits(folder)[split], max_bytes=max_bytes)


def read_shard_bytes(urls: list[str], bad_shards: str = "stop", max_bytes: Optional[int] = None) -> torch.Tensor:
    """All bytes of the shards at `urls` (a split, for validation), or their first max_bytes, as a uint8 tensor."""
    parts, size = [], 0
    for blob in text_samples(urls, bad_shards):
        parts.append(blob)
        size += len(blob)
        if max_bytes is not None and size >= max_bytes:
            break
    return torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8)


class ShardWindows(IterableDataset):
    """Random windows of `window` bytes drawn from the samples this reader owns, through a pool of samples.

    Reader r of R = world_size * workers owns shards r, r+R, ... (or samples r, r+R, ...
    when there are fewer shards than readers). Yields `windows` windows per rank in total.

    Args:
        shards: the split's shards, paths or URLs (shard_manifest.shard_splits lists them).
        window: bytes per window (seq_len + 1).
        windows: windows per rank in total.
        seed: seed of the window offsets (each reader draws its own stream).
        rank: global rank of this process (node * devices + local rank).
        world: number of ranks.
        bad_shards: "stop" or "skip" a shard that cannot be read (remote.py's shard_samples).
        name: what the shards are, for messages (e.g. the data path and split).
        pool: samples held at once; each window comes from a random one of them, so a batch mixes samples (and
            their places in the text) instead of cutting every window from one sample. The pool fills before the
            first window.
    """

    def __init__(self, shards: list[str], window: int, windows: int, seed: int, rank: int, world: int,
                 bad_shards: str = "stop", name: str = "train", pool: int = 32):
        if pool < 1:
            raise EmberDataError(f"pool={pool} must be >= 1 (samples windows are drawn from)")
        self.pool = pool
        self.shards, self.window, self.windows = list(shards), window, windows
        self.seed, self.rank, self.world, self.bad_shards, self.name = seed, rank, world, bad_shards, name

    def __len__(self) -> int:
        return self.windows

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        readers, reader = self.world * workers, self.rank * workers + worker
        by_shard = len(self.shards) >= readers
        shards = self.shards[reader::readers] if by_shard else self.shards
        quota = math.ceil(self.windows / workers)
        gen = torch.Generator().manual_seed(self.seed * 7919 + reader)
        pick = lambda n: int(torch.randint(0, n, (1,), generator=gen))  # noqa: E731
        pool: list[torch.Tensor] = []  # the samples windows are drawn from (a shuffle buffer of samples)
        produced, owed, skipped = 0, 0, {}
        while produced < quota:
            before = produced
            for i, blob in enumerate(text_samples(shards, self.bad_shards, skipped)):
                if not by_shard and i % readers != reader or len(blob) < self.window:
                    continue
                data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
                if len(pool) < self.pool:
                    pool.append(data)
                else:  # a random sample leaves the pool for the new one
                    pool[pick(self.pool)] = data
                owed += max(1, len(blob) // self.window)  # each sample pays for its share of windows
                if len(pool) < self.pool:
                    continue  # filling: windows come from a full pool, not from the first samples alone
                for window in self._draw(pool, owed, pick):
                    yield window
                    produced, owed = produced + 1, owed - 1
                    if produced >= quota:
                        return
            for window in self._draw(pool, owed, pick):  # a reader with fewer samples than the pool holds
                yield window
                produced, owed = produced + 1, owed - 1
                if produced >= quota:
                    return
            if produced == before:
                raise self._dry_pass(shards, skipped)

    def _draw(self, pool: list[torch.Tensor], count: int, pick) -> Iterator[torch.Tensor]:
        """`count` windows, each from a random sample of the pool at a random offset."""
        for _ in range(count):
            data = pool[pick(len(pool))]
            start = pick(len(data) - self.window + 1)
            yield data[start : start + self.window].long()

    def _dry_pass(self, shards: list[str], skipped: dict[str, str]) -> EmberDataError:
        """The error of a pass over this reader's shards that gave no window."""
        if not shards:
            return EmberDataError(f"the {self.name} split lists no shards: write it again with `ember data prepare "
                                  "text`")
        if all(s in skipped for s in shards):
            return EmberDataError(f"every {self.name} shard this reader owns was skipped as unreadable; the first: "
                                  f"{skipped[shards[0]]}")
        return EmberDataError(f"no {self.name} sample is longer than seq_len+1={self.window} bytes: rewrite the "
                              "shards with a larger --chunk-bytes")
