"""Fuzz: damaged data files given to the command that reads them: a shard (.tar) or the manifest of a text shard
folder (`ember validate --data.init_args.path`) or an audio one (`ember fit`, AudioJEPA), a WAV inside an audio
shard, a sudoku .txt/.csv and a maze .csv (`ember fit --data.init_args.train_path`). And WAV files given to
read_audio: a WAV or EmberDataError, nothing else. The property of every case: tests/cli/conftest.py, Fuzz.
"""

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ember.data_modules.audio import encode_wav, read_audio
from ember.data_modules.audio_shards import prepare_prosody_shards
from ember.data_modules.maze_generate import generate_mazes
from ember.data_modules.maze_paths import CHARS
from ember.data_modules.shard_manifest import MANIFEST
from ember.data_modules.shards import prepare_text_shards
from ember.data_modules.sudoku import generate_sudoku
from ember.errors import EmberDataError
from helpers import (
    FUZZ_CHEAP,
    FUZZ_EXAMPLES,
    ONE_STEP,
    ROOT,
    damaged,
    damaged_json,
    digits,
    fuzz_rng,
    grid_text,
    tally,
    tone,
)

CASES = range(FUZZ_EXAMPLES)
JEPA, SUDOKU, MAZE = (str(ROOT / f"configs/debug/{name}.yaml") for name in ("jepa_audio", "sudoku", "maze"))
QUICK_VALIDATE = ["--trainer.logger", "false", "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar",
                  "false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Valid files of every kind: text and audio shard folders, sudoku .txt and .csv, a maze .csv."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "text.txt").write_bytes(b"The quick brown fox jumps over the lazy dog. " * 200)
    prepare_text_shards([folder / "text.txt"], folder / "text_shards", chunk_bytes=512, shard_bytes=2048)
    prepare_prosody_shards(folder / "audio_shards", size=8, seconds=1.0)
    sudoku = generate_sudoku(6, seed=1, min_clues=40)
    rows = [(grid_text([d if d > 0 else 0 for d in digits(x)]), grid_text(digits(y)))
            for x, y in zip(sudoku.inputs, sudoku.labels)]
    (folder / "sudoku.txt").write_text("# tdoku puzzles\n" + "".join(f"{p}\n" for p, _ in rows))
    (folder / "sudoku.csv").write_text("puzzle,solution\n" + "".join(f"{p},{s}\n" for p, s in rows))
    mazes = generate_mazes(6, size=10, min_path=8, style="open")
    text = lambda grid: "".join(CHARS[k - 1] for k in grid)  # noqa: E731
    (folder / "maze.csv").write_text("question,answer\n" + "".join(f"{text(x)},{text(y)}\n"
                                                                   for x, y in zip(mazes.inputs, mazes.labels)))
    return {"folder": folder}


def reader_args(kind: str, path: Path, trained) -> list[str]:
    """The command that reads a data path of `kind`."""
    if kind == "text":
        config, ckpt = trained
        return ["validate", "--config", config, "--ckpt_path", ckpt, "--data.init_args.path", str(path),
                *QUICK_VALIDATE]
    if kind == "audio":
        return ["fit", "--config", JEPA, *ONE_STEP, "--data.init_args.path", str(path)]
    return ["fit", "--config", {"sudoku": SUDOKU, "maze": MAZE}[kind], *ONE_STEP, "--data.init_args.train_path",
            str(path)]


def damage_member(tar: Path, suffix: str, rng) -> str:
    """Rewrite a tar with the bytes of one member ending in `suffix` damaged; returns what was done."""
    with tarfile.open(tar) as src:
        members = [(m, src.extractfile(m).read()) for m in src.getmembers()]
    names = [m.name for m, _ in members if m.name.endswith(suffix)]
    name = names[int(rng.integers(len(names)))]
    with tarfile.open(tar, "w") as out:
        for member, blob in members:
            if member.name == name:
                what, blob = damaged(blob, rng)
                member.size = len(blob)
            out.addfile(member, io.BytesIO(blob))
    return f"{tar.name}:{name} {what}"


@pytest.mark.slow
@pytest.mark.parametrize("index", CASES)
@pytest.mark.parametrize("kind", ["text", "audio"])
def test_a_damaged_shard(kind, index, data, trained_runs, fuzz, tmp_path):
    rng = fuzz_rng("shard", kind, index)
    folder = shutil.copytree(data["folder"] / f"{kind}_shards", tmp_path / "shards")
    tars = sorted(folder.glob("*.tar"))
    tar = tars[int(rng.integers(len(tars)))]
    if kind == "audio" and index % 2:
        what = damage_member(tar, ".wav", rng)
        label = "WAV in an audio shard (fit)"
    else:
        what, blob = damaged(tar.read_bytes(), rng)
        tar.write_bytes(blob)
        what, label = f"{tar.name} {what}", f"{kind} shard .tar ({'validate' if kind == 'text' else 'fit'})"
    fuzz(label, what, reader_args(kind, folder, trained_runs["memory"]), watch=[tmp_path])


@pytest.mark.slow
@pytest.mark.parametrize("index", CASES)
@pytest.mark.parametrize("kind", ["text", "audio"])
def test_a_damaged_manifest(kind, index, data, trained_runs, fuzz, tmp_path):
    rng = fuzz_rng("manifest", kind, index)
    folder = shutil.copytree(data["folder"] / f"{kind}_shards", tmp_path / "shards")
    manifest = folder / MANIFEST
    if index % 2:
        what, blob = damaged(manifest.read_bytes(), rng)
        manifest.write_bytes(blob)
    else:  # still JSON, another shape
        what, value = damaged_json(json.loads(manifest.read_text()), rng)
        manifest.write_text(json.dumps(value))
    fuzz(f"shard manifest ({kind})", f"{MANIFEST} {what}", reader_args(kind, folder, trained_runs["memory"]),
         watch=[tmp_path])


@pytest.mark.slow
@pytest.mark.parametrize("index", CASES)
@pytest.mark.parametrize("kind, file", [("sudoku", "sudoku.txt"), ("sudoku", "sudoku.csv"), ("maze", "maze.csv")])
def test_a_damaged_puzzle_file(kind, file, index, data, fuzz, tmp_path):
    rng = fuzz_rng("puzzles", file, index)
    path = tmp_path / file
    what, blob = damaged((data["folder"] / file).read_bytes(), rng)
    path.write_bytes(blob)
    fuzz(f"{kind} {path.suffix[1:].upper()} (fit)", f"{file} {what}", reader_args(kind, path, None), watch=[tmp_path])


@pytest.mark.parametrize("index", range(8 * FUZZ_CHEAP * FUZZ_EXAMPLES))
def test_a_damaged_wav_file_reads_or_is_refused(index, tmp_path):
    rng = fuzz_rng("wav", index)
    what, blob = damaged(encode_wav(tone(220.0, seconds=0.05, amp=0.5), 16000), rng)
    path = tmp_path / "voice.wav"
    path.write_bytes(blob)
    handled = True
    try:
        x = read_audio(path)
        handled = x.ndim == 1 and x.dtype == np.float32 and np.isfinite(x).all()
    except EmberDataError:
        pass
    except Exception:  # noqa: BLE001  (the case failed: tallied, then re-raised)
        handled = False
        raise
    finally:
        tally("WAV file (read_audio)", handled, path.read_bytes() == blob)
    assert handled, f"read_audio returned a bad waveform for a WAV {what}"
