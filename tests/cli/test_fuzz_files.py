"""Fuzz: damaged copies (emptied, truncated, random bytes, bit flips, stretches zeroed, overwritten or repeated) of
the files a user hands Ember, each given to the command that reads it: a checkpoint (`ember validate`, `ember
session`), a memory-state file and a text (`ember session`, `ember validate --data.init_args.path`), an ablation
table (`ember ablate --resume`). Every case exits 0 or 2 with no traceback and changes no file that existed, the
damaged one included, unless the command succeeded and was asked to write it (tests/cli/conftest.py, Fuzz).
"""

import json
import shutil
from pathlib import Path

import pytest

from helpers import FUZZ_EXAMPLES, damaged, damaged_json, fuzz_rng, run_cli

pytestmark = pytest.mark.slow  # the fixtures train, and a file that still reads is validated or streamed
CASES = range(FUZZ_EXAMPLES)
QUICK_VALIDATE = ["--trainer.logger", "false", "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar",
                  "false"]
TEXT = b"Ada Obi's city is Lyon. Her dog is called Rex; it sleeps in the kitchen.\n" * 30
# A variant that stops at once if fitted (its override is not a number): a case never trains, and a table whose
# row for it reads back is kept (exit 0, the table rewritten as asked), any other exit 2 with the table untouched.
VARIANT = "quick=,--trainer.max_steps=none"


@pytest.fixture(scope="module")
def originals(trained_runs, tmp_path_factory) -> dict:
    """A trained memory model's config and checkpoint, a memory state it wrote, a text and an ablation table."""
    config, ckpt = trained_runs["memory"]
    folder = tmp_path_factory.mktemp("originals")
    (folder / "text.txt").write_bytes(TEXT)
    assert run_cli("session", "--config", config, "--ckpt_path", ckpt, "--memory-state", str(folder / "state.mem"),
                   "--input", str(folder / "text.txt"), "--span", "64") == 0
    table = {"configs": [config], "extra": [], "variants": [VARIANT],
             "rows": [{"variant": "quick", "params": 1000, "state_bytes": 64, "steps": 1, "train_minutes": 0.01,
                       "checkpoint": None, "test/loss": 2.5}]}
    (folder / "ablation.json").write_text(json.dumps(table, indent=1))
    return {"config": config, "ckpt": Path(ckpt), "folder": folder}


def damaged_copy(original: Path, to: Path, rng) -> str:
    """Write a damaged copy of original at `to`; returns what was done."""
    what, data = damaged(original.read_bytes(), rng)
    to.write_bytes(data)
    return what


def session_args(config: str, ckpt, state, text) -> list[str]:
    return ["session", "--config", config, "--ckpt_path", str(ckpt), "--memory-state", str(state), "--input",
            str(text), "--span", "64"]


@pytest.mark.parametrize("index", CASES)
@pytest.mark.parametrize("reader", ["validate", "session"])
def test_a_damaged_checkpoint(reader, index, originals, fuzz, tmp_path):
    rng = fuzz_rng("checkpoint", reader, index)
    bad = tmp_path / "bad.ckpt"
    what = damaged_copy(originals["ckpt"], bad, rng)
    shutil.copy(originals["folder"] / "text.txt", tmp_path / "text.txt")
    argv = (["validate", "--config", originals["config"], "--ckpt_path", str(bad), *QUICK_VALIDATE]
            if reader == "validate" else session_args(originals["config"], bad, tmp_path / "new.mem",
                                                      tmp_path / "text.txt"))
    fuzz(f"checkpoint ({reader})", f"checkpoint {what}", argv, watch=[tmp_path, originals["ckpt"]])


@pytest.mark.parametrize("index", CASES)
def test_a_damaged_memory_state(index, originals, fuzz, tmp_path):
    rng = fuzz_rng("memory-state", index)
    state = tmp_path / "state.mem"
    what = damaged_copy(originals["folder"] / "state.mem", state, rng)
    shutil.copy(originals["folder"] / "text.txt", tmp_path / "text.txt")
    fuzz("memory-state file (session)", f"memory state {what}",
         session_args(originals["config"], originals["ckpt"], state, tmp_path / "text.txt"),
         watch=[tmp_path, originals["ckpt"]], writes=[state])


@pytest.mark.parametrize("index", CASES)
@pytest.mark.parametrize("reader", ["validate", "session"])
def test_a_damaged_text(reader, index, originals, fuzz, tmp_path):
    rng = fuzz_rng("text", reader, index)
    text = tmp_path / "text.txt"
    what = damaged_copy(originals["folder"] / "text.txt", text, rng)
    argv = (["validate", "--config", originals["config"], "--ckpt_path", str(originals["ckpt"]),
             "--data.init_args.path", str(text), *QUICK_VALIDATE]
            if reader == "validate" else session_args(originals["config"], originals["ckpt"], tmp_path / "new.mem",
                                                      text))
    fuzz(f"text ({reader})", f"text {what}", argv, watch=[tmp_path, originals["ckpt"]])


@pytest.mark.parametrize("index", CASES)
def test_a_damaged_ablation_table(index, originals, fuzz, tmp_path):
    rng = fuzz_rng("ablation.json", index)
    out = tmp_path / "ablate"
    out.mkdir()
    table = out / "ablation.json"
    if index % 2:
        what = damaged_copy(originals["folder"] / "ablation.json", table, rng)
    else:  # still JSON, another shape: a value of another type somewhere, or a key dropped
        what, value = damaged_json(json.loads((originals["folder"] / "ablation.json").read_text()), rng)
        table.write_text(json.dumps(value))
    argv = ["ablate", "--config", originals["config"], "--variant", VARIANT, "--out", str(out), "--resume"]
    fuzz("ablation.json (ablate --resume)", f"ablation.json {what}", argv, watch=[tmp_path],
         writes=[table, out / "ablation.md"])
