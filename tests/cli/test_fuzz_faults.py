"""Fuzz: a file operation that fails (a full disk, an I/O error, no permission, a read-only file system) at a random
point of each command that writes: `ember session` (the memory state), `ember data prepare text --overwrite`,
`ember ablate --resume` (the table), `ember stability --out`, `ember fit` (checkpoints). The operations counted:
opening a file to write and each write to it, os.replace/rename/fsync/chmod/mkdir, mkstemp/mkdtemp, rmtree. Every
case exits 0 or 2 with no traceback, files that existed keep their bytes unless the command succeeded, and a failed
write leaves no temporary file behind that its message does not name (tests/cli/conftest.py, Fuzz).
"""

import builtins
import errno
import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import FUZZ_EXAMPLES, ONE_STEP, fuzz_rng, run_cli, session_state

pytestmark = pytest.mark.slow  # the commands load a trained model or train a step
CODES = (errno.ENOSPC, errno.EIO, errno.EACCES, errno.EROFS, errno.EDQUOT)
VARIANT = "quick=,--trainer.max_steps=none"  # fitted, it stops at once; the table below keeps its row


class Faults:
    """Counts the file operations of the code run inside `failing(at, code)` and makes the at-th raise
    OSError(code) (at None: counts only)."""

    def __init__(self, monkeypatch):
        self.monkeypatch, self.count, self.at, self.code = monkeypatch, 0, None, errno.ENOSPC

    def step(self, what: str):
        self.count += 1
        if self.count == self.at:
            raise OSError(self.code, f"{os.strerror(self.code)} (fault injected at {what})")

    @contextmanager
    def failing(self, at, code: int):
        self.count, self.at, self.code = 0, at, code
        real_open = io.open

        def opener(file, mode="r", *args, **kwargs):
            if not any(c in mode for c in "wax+"):
                return real_open(file, mode, *args, **kwargs)
            self.step(f"open({file!r}, {mode!r})")
            return _Counted(real_open(file, mode, *args, **kwargs), self)

        with self.monkeypatch.context() as patch:
            patch.setattr(builtins, "open", opener)
            patch.setattr(io, "open", opener)
            for module, name in ((os, "replace"), (os, "rename"), (os, "fsync"), (os, "chmod"), (os, "mkdir"),
                                 (tempfile, "mkstemp"), (tempfile, "mkdtemp"), (shutil, "rmtree")):
                patch.setattr(module, name, self._counted(getattr(module, name), f"{module.__name__}.{name}"))
            yield self

    def _counted(self, real, what: str):
        def call(*args, **kwargs):
            self.step(what)
            return real(*args, **kwargs)
        return call


class _Counted:
    """A file opened to write whose every write is a counted operation."""

    def __init__(self, file, faults: Faults):
        self._file, self._faults = file, faults

    def write(self, data):
        self._faults.step(f"write to {getattr(self._file, 'name', '?')}")
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        self._file.__enter__()
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)

    def __iter__(self):
        return iter(self._file)


@pytest.fixture(scope="module")
def start(trained_runs, tmp_path_factory) -> dict:
    """What the commands start from: a trained memory model, its memory state, a text, an ablation table."""
    config, ckpt = trained_runs["memory"]
    folder = tmp_path_factory.mktemp("start")
    session_state(trained_runs["memory"], folder, "Ada Obi's city is Lyon. Her dog is called Rex.\n" * 40)
    table = {"configs": [config], "extra": [], "variants": [VARIANT],
             "rows": [{"variant": "quick", "params": 1000, "steps": 1, "test/loss": 2.5}]}
    (folder / "ablation.json").write_text(json.dumps(table))
    return {"config": config, "ckpt": ckpt, "folder": folder}


def command(name: str, start: dict, here: Path) -> tuple[list[str], list[Path], list[Path]]:
    """The argv of a command that writes, set up in the folder `here`; the files it may rewrite if it succeeds; and
    those it may rewrite and then fail (ablate writes its table, then the markdown beside it)."""
    config, ckpt, folder = start["config"], start["ckpt"], start["folder"]
    shutil.copy(folder / "text.txt", here / "text.txt")
    if name == "session":
        shutil.copy(folder / "state.mem", here / "state.mem")
        return (["session", "--config", config, "--ckpt_path", ckpt, "--memory_state", str(here / "state.mem"),
                 "--input", str(here / "text.txt"), "--span", "64"], [here / "state.mem"], [])
    if name == "data prepare text":
        assert run_cli("data", "prepare", "text", "--input", str(folder / "text.txt"), "--out", str(here / "shards"),
                       "--chunk_bytes", "256", "--shard_bytes", "1024") == 0
        return (["data", "prepare", "text", "--input", str(here / "text.txt"), "--out", str(here / "shards"),
                 "--chunk_bytes", "128", "--shard_bytes", "512", "--overwrite", "true"],
                list((here / "shards").iterdir()), [])
    if name == "ablate --resume":
        (here / "ablate").mkdir()
        shutil.copy(folder / "ablation.json", here / "ablate/ablation.json")
        return (["ablate", "--config", config, "--variant", VARIANT, "--out", str(here / "ablate"), "--resume"],
                [], [here / "ablate/ablation.json"])
    if name == "stability --out":
        (here / "stability.json").write_text('{"an": "earlier result"}')
        return (["stability", "--config", config, "--ckpt_path", ckpt, "--sessions", "2", "--session-bytes", "256",
                 "--heldout-bytes", "256", "--span", "64", "--out", str(here / "stability.json")],
                [here / "stability.json"], [])
    return ["fit", "--config", config, *ONE_STEP, "--trainer.default_root_dir", str(here / "runs")], [], []


COMMANDS = ("session", "data prepare text", "ablate --resume", "stability --out", "fit")


@pytest.fixture(scope="module")
def operations(start, tmp_path_factory) -> dict[str, int]:
    """How many file operations each command makes when nothing fails: the range of the fault's position."""
    counts = {}
    for name in COMMANDS:
        here = tmp_path_factory.mktemp("count")
        argv, _, _ = command(name, start, here)
        with Faults(pytest.MonkeyPatch()).failing(None, 0) as faults:
            assert run_cli(*argv) == 0
        counts[name] = faults.count
    return counts


@pytest.mark.parametrize("index", range(FUZZ_EXAMPLES))
@pytest.mark.parametrize("name", COMMANDS)
def test_a_failed_file_operation(name, index, start, operations, fuzz, tmp_path, monkeypatch):
    rng = fuzz_rng("fault", name, index)
    at, code = int(rng.integers(1, operations[name] + 1)), CODES[int(rng.integers(len(CODES)))]
    argv, writes, rewrites = command(name, start, tmp_path)
    hidden = sorted(str(p) for p in tmp_path.rglob(".*"))
    with Faults(monkeypatch).failing(at, code):
        fuzz(f"file operation failed: {name}", f"{errno.errorcode[code]} at operation {at} of "
             f"{operations[name]}", argv, watch=[tmp_path], writes=writes, rewrites=rewrites)
    left = [str(p) for p in tmp_path.rglob(".*") if str(p) not in hidden and str(p) not in fuzz.text]
    assert not left, f"{name}: {errno.errorcode[code]} at operation {at} left temporary files {left} unnamed"
    for table in rewrites:  # replaced or not, whole, with the finished row
        assert [row["variant"] for row in json.loads(table.read_text())["rows"]] == ["quick"]
