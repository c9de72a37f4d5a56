"""Fuzz: SIGKILL at a random moment while Ember writes each kind of file over an earlier version: a checkpoint
(Lightning's save, what `ember fit` calls), a memory-state file (`ember session`), a text shard folder (`ember data
prepare text --overwrite`), a JSON table (ablation.json, stability's --out: ember.files.atomic_write_text) and a
puzzle cache file. The writer runs in a forked child (no import cost) killed after a random delay of up to twice its
measured duration, half of the kills around its end, where the name changes hands. Then the name holds the earlier
version byte for byte, or the new one whole and readable, never a part, and no other file takes a real name
(temporary names start with a dot).
"""

import json
import os
import select
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ember.cli.runs import build_model
from ember.data_modules.puzzles import PuzzleSet, save_atomic
from ember.data_modules.shards import prepare_text_shards, read_split_bytes
from ember.files import atomic_write_text, load_checkpoint
from ember.memory_state import load_memory_state, save_memory_state
from helpers import FUZZ_CHEAP, FUZZ_EXAMPLES, FUZZ_SEED, ROOT, fuzz_rng, snapshot, tally

MEMORY = str(ROOT / "configs/debug/nml_memory.yaml")
LIMIT_S = 60  # a writer left to finish that takes longer is killed, and its case fails


class Writers:
    """For each kind of file, two versions, how to write version v at a path and which version a path holds (None
    when it holds neither whole)."""

    def __init__(self, folder: Path):
        self.model = build_model(MEMORY).eval()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.states = {v: self.model(torch.randint(0, 256, (1, 96), generator=gen))[1] for v in (1, 2)}
            self.template = self.model(torch.zeros(1, 1, dtype=torch.long))[1]
        weights = self.model.state_dict()
        self.ckpts = {v: {"state_dict": {k: t + v for k, t in weights.items()}, "version": v} for v in (1, 2)}
        rng = np.random.default_rng(0)
        self.texts = {}
        for v in (1, 2):  # ~1 MB of text each, so writing and replacing the folder take a while
            self.texts[v] = folder / f"text{v}.txt"
            self.texts[v].write_bytes(bytes(rng.integers(32, 127, 1 << 20, dtype=np.uint8)))
        self.puzzles = {v: PuzzleSet(np.full((2000, 81), v, np.uint8), np.full((2000, 81), v + 1, np.uint8))
                        for v in (1, 2)}

    def write(self, kind: str, path: Path, v: int):
        if kind == "checkpoint":
            TorchCheckpointIO().save_checkpoint(self.ckpts[v], path)
        elif kind == "memory-state file":
            save_memory_state(self.states[v], path, self.model)
        elif kind == "text shard folder":
            prepare_text_shards([self.texts[v]], path, chunk_bytes=2048, shard_bytes=8192, overwrite=True)
        elif kind == "JSON table":
            atomic_write_text(path, json.dumps({"version": v, "rows": [{"variant": str(i)} for i in range(2000)]}))
        else:
            save_atomic(path, self.puzzles[v])

    def version(self, kind: str, path: Path) -> int | None:
        try:
            return next((v for v in (1, 2) if self._holds(kind, path, v)), None)
        except Exception:  # noqa: BLE001  (a half-written file raises anything: it holds neither)
            return None

    def _holds(self, kind: str, path: Path, v: int) -> bool:
        if kind == "checkpoint":
            saved = load_checkpoint(path)
            return saved["version"] == v and all(torch.equal(saved["state_dict"][k], t)
                                                 for k, t in self.ckpts[v]["state_dict"].items())
        if kind == "memory-state file":
            state = load_memory_state(path, self.model, self.template).tensors()
            return all(torch.equal(state[k], t) for k, t in self.states[v].tensors().items())
        if kind == "text shard folder":
            data = self.texts[v].read_bytes()
            return bytes(read_split_bytes(path, "train").numpy()) + bytes(read_split_bytes(path, "val").numpy()) == data
        if kind == "JSON table":
            return json.loads(path.read_text())["version"] == v
        with np.load(path) as f:
            return bool((f["inputs"] == self.puzzles[v].inputs).all() and (f["labels"] == self.puzzles[v].labels).all())


KINDS = {"checkpoint": "last.ckpt", "memory-state file": "user.mem", "text shard folder": "shards",
         "JSON table": "ablation.json", "puzzle cache": "sudoku-train-0123456789abcdef.npz"}


@pytest.fixture(scope="module")
def writers(tmp_path_factory) -> Writers:
    return Writers(tmp_path_factory.mktemp("versions"))


def killed_while_writing(writers: Writers, kind: str, path: Path, delay: float | None) -> tuple[int, float]:
    """Write version 2 at path in a forked child, SIGKILLed `delay` seconds after it starts (None: let it finish,
    within LIMIT_S). Returns the child's wait status and how long its write took (None: it did not finish)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write, then leave at once (no pytest teardown, no atexit)
        code = 1
        try:
            os.write(write_end, b"s")  # started
            writers.write(kind, path, 2)
            os.write(write_end, b"e")  # ended
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    os.read(read_end, 1)
    start, took = time.perf_counter(), None
    if delay is not None:
        time.sleep(delay)
    elif select.select([read_end], [], [], LIMIT_S)[0] and os.read(read_end, 1) == b"e":
        took = time.perf_counter() - start
    os.kill(pid, signal.SIGKILL)  # killed mid-write, or (finished, or past LIMIT_S) harmless
    _, status = os.waitpid(pid, 0)
    os.close(read_end)
    return (0 if took is not None else status), took


@pytest.fixture(scope="module")
def durations(writers, tmp_path_factory) -> dict[str, float]:
    """How long each writer takes in a child, as the cases run it (the median of three): the scale of their kill
    delays."""
    out = {}
    for kind, name in KINDS.items():
        took = []
        for _ in range(3):
            folder = tmp_path_factory.mktemp("timing")
            writers.write(kind, folder / name, 1)
            took.append(killed_while_writing(writers, kind, folder / name, None)[1])
            assert took[-1] is not None and writers.version(kind, folder / name) == 2, f"{kind}: the writer fails"
        out[kind] = sorted(took)[1]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("index", range(FUZZ_CHEAP * FUZZ_EXAMPLES))
@pytest.mark.parametrize("kind", KINDS)
def test_a_kill_while_writing_leaves_the_old_version_or_the_new_one(kind, index, writers, durations, tmp_path):
    path = tmp_path / KINDS[kind]
    writers.write(kind, path, 1)
    before = snapshot(path)
    rng = fuzz_rng("kill", kind, index)  # half the kills anywhere, half around the end, where the name changes hands
    delay = durations[kind] * float(rng.uniform(0, 2) if index % 2 else rng.uniform(0.6, 1.4))
    status, _ = killed_while_writing(writers, kind, path, delay)
    found = writers.version(kind, path)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    handled = status in (0, signal.SIGKILL)  # finished, or killed: not failed by itself
    lost = [f"{path.name} holds neither version whole"] if found is None else []
    lost += [f"{path.name} holds the earlier version, but not byte for byte"] if found == 1 and \
        snapshot(path) != before else []
    lost += [f"other files took real names: {names}"] if names != [path.name] else []
    tally(f"kill while writing: {kind}", handled, not lost, {1: "earlier version", 2: "new version"}.get(found, ""))
    problems = lost + ([] if handled else [f"the writer failed by itself (status {status})"])
    assert not problems, (f"{kind} killed {delay * 1e3:.1f} ms into its write: {'; '.join(problems)}\n  replay: "
                          f"EMBER_FUZZ_SEED={FUZZ_SEED} EMBER_FUZZ_EXAMPLES={FUZZ_EXAMPLES}")
