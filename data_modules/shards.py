"""Text as webdataset shards: `ember data prepare text` writes them, TextBytes reads them.

Layout of a shard folder:
    ember-shards.json          manifest: format, splits, shard names, bytes and samples per split
    train-000000.tar ...       samples {"__key__", "txt": a chunk of raw bytes}
    val-000000.tar ...

Reading splits the shard list explicitly by (trainer rank, DataLoader worker): Lightning's
launchers set no RANK variable, so webdataset's own node splitter would hand every rank
every shard. With fewer shards than readers, readers split the samples instead.
"""

from __future__ import annotations

import json
import logging
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from ember.data_modules.corpus import read_text_files
from ember.data_modules.shard_manifest import FORMAT, MANIFEST, built_folder, check_out, read_manifest
from ember.errors import EmberDataError

log = logging.getLogger(__name__)


def prepare_text_shards(inputs: list[Path], out: Path, chunk_bytes: int = 1 << 16, shard_bytes: int = 1 << 28,
                        val_fraction: float = 0.1, overwrite: bool = False) -> dict:
    """Write text files as train/val shards into `out` (built in a temporary folder, then renamed).

    The concatenated text is split contiguously: the first (1 - val_fraction) train, the rest validate.
    Returns the manifest.
    """
    out = Path(out)
    for path in inputs:  # --overwrite replaces --out as a whole: it must not hold (or be) what is read
        inside, holds = Path(path).resolve(), out.resolve()
        if inside == holds or holds in inside.parents or inside in holds.parents:
            raise EmberDataError(f"--out {out} is, holds or lies inside the input {path}: writing it would replace the "
                                 "input. Choose an --out outside the inputs")
    check_out(out, overwrite)
    if chunk_bytes < 1 or shard_bytes < 1:
        raise EmberDataError(f"chunk_bytes={chunk_bytes} and shard_bytes={shard_bytes} must be >= 1")
    if not 0 < val_fraction < 1:
        raise EmberDataError(f"val_fraction={val_fraction} must be in (0, 1)")
    data = _read_inputs(inputs)
    n_val = max(1, int(len(data) * val_fraction))
    with built_folder(out) as tmp:
        manifest = {"format": FORMAT, "chunk_bytes": chunk_bytes,
                    "train": _write_split(tmp, "train", data[: len(data) - n_val], chunk_bytes, shard_bytes),
                    "val": _write_split(tmp, "val", data[len(data) - n_val :], chunk_bytes, shard_bytes)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    log.info("wrote %d train and %d val shard(s) to %s", len(manifest["train"]["shards"]),
             len(manifest["val"]["shards"]), out)
    return manifest


def _read_inputs(inputs: list[Path]) -> bytes:
    return b"\n".join(read_text_files(Path(p)) for p in inputs)


def _write_split(folder: Path, split: str, data: bytes, chunk_bytes: int, shard_bytes: int) -> dict:
    pattern = str(folder / f"{split}-%06d.tar")
    with wds.ShardWriter(pattern, maxsize=shard_bytes, verbose=0) as sink:
        samples = 0
        for i, start in enumerate(range(0, len(data), chunk_bytes)):
            sink.write({"__key__": f"{i:09d}", "txt": data[start : start + chunk_bytes]})
            samples += 1
    shards = sorted(p.name for p in folder.glob(f"{split}-*.tar"))
    return {"shards": shards, "bytes": len(data), "samples": samples}


def _samples(folder: Path, shards: list[str]) -> Iterator[bytes]:
    urls = [str(folder / s) for s in shards]
    if not urls:
        return
    try:
        for sample in wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=None,
                                     empty_check=False):
            yield sample["txt"]
    except (tarfile.TarError, OSError, KeyError, ValueError) as err:  # truncated, corrupt, or not a text shard
        raise EmberDataError(f"a shard of {folder} cannot be read ({err}): write the folder again with `ember data "
                             "prepare text --input <your text> --out <a new folder>`") from err


def read_split_bytes(folder: Path, split: str, max_bytes: Optional[int] = None) -> torch.Tensor:
    """All bytes of a split (for validation), or its first max_bytes, as a uint8 tensor."""
    manifest = read_manifest(folder)
    parts, size = [], 0
    for blob in _samples(folder, manifest[split]["shards"]):
        parts.append(blob)
        size += len(blob)
        if max_bytes is not None and size >= max_bytes:
            break
    return torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8)


class ShardWindows(IterableDataset):
    """Random windows of `window` bytes drawn from the samples this reader owns.

    Reader r of R = world_size * workers owns shards r, r+R, ... (or samples r, r+R, ...
    when there are fewer shards than readers). Yields `windows` windows per rank in total.
    """

    def __init__(self, folder: Path, split: str, window: int, windows: int, seed: int, rank: int, world: int):
        self.folder, self.split, self.window, self.windows = folder, split, window, windows
        self.seed, self.rank, self.world = seed, rank, world
        self.shards = read_manifest(folder)[split]["shards"]

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
        produced, passes = 0, 0
        while produced < quota:
            passes += 1
            for i, blob in enumerate(_samples(self.folder, shards)):
                if not by_shard and i % readers != reader or len(blob) < self.window:
                    continue
                data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
                for _ in range(max(1, len(blob) // self.window)):
                    start = int(torch.randint(0, len(blob) - self.window + 1, (1,), generator=gen))
                    yield data[start : start + self.window].long()
                    produced += 1
                    if produced >= quota:
                        return
            if passes > 1 and produced == 0:
                raise EmberDataError(f"no {self.split} sample in {self.folder} is longer than seq_len+1="
                                     f"{self.window} bytes: rewrite the shards with a larger --chunk-bytes")
