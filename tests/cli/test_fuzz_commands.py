"""Fuzz: one random value, inside or outside its range, for an option of the commands LightningCLI does not parse:
`ember data prepare text`, `ember data prepare audio-prosody`, `ember session`, `ember stability`. Sizes of 0, -1,
2^40 and 2^63, NaN and infinite fractions, words for numbers, and paths that are missing, a file where a folder
belongs, a folder where a file belongs, the input as the output. Every case exits 0 or 2 with no traceback and
changes no file that existed, unless it succeeded and was asked to write it (tests/cli/conftest.py, Fuzz).

Counts of work (utterances to synthesize) are fuzzed small and wrong, not huge: a huge one is honest work, slow.
"""

import shutil
from pathlib import Path

import pytest

from helpers import FUZZ_EXAMPLES, fuzz_rng, session_state

pytestmark = pytest.mark.slow  # session and stability load a trained model
HUGE = [str(2**40), str(2**63)]
SIZE = (["64", "1000"], ["0", "-1", "abc", "1.5", "", *HUGE])
FRACTION = (["0.1", "0.5"], ["0", "1", "-1", "nan", "inf", "abc"])
FLAG = (["true", "false"], ["maybe", "2", ""])
OUT = (["NEW"], ["FILE", "FULL", "", "TEXT", "MISSING/deeper"])
TEXT_IN = (["TEXT"], ["MISSING", "FOLDER", "EMPTY", "BINARY", ""])
OPTIONS = {
    "data prepare text": {"--input": TEXT_IN, "--out": OUT, "--chunk_bytes": SIZE, "--shard_bytes": SIZE,
                          "--val_fraction": FRACTION, "--overwrite": FLAG},
    "data prepare audio-prosody": {"--out": OUT, "--size": (["4", "6"], ["0", "1", "-1", "abc"]),
                                   "--seed": (["0", "7"], ["-1", "abc", *HUGE]),
                                   "--task": (["all", "question"], ["", "bogus"]),
                                   "--source": (["synth"], ["bogus", ""]),
                                   "--seconds": (["0.2", "0.5"], ["0", "-1", "nan", "inf", "1e30", "abc"]),
                                   "--val_fraction": FRACTION, "--overwrite": FLAG},
    "session": {"--span": (["1", "64", "100000"], ["0", "-1", "abc", *HUGE]), "--input": TEXT_IN,
                "--memory-state": (["NEW", "STATE"], ["FOLDER", "FILE", "MISSING/deeper", ""]),
                "--config": ([], ["MISSING", "FILE", "FOLDER"]), "--ckpt_path": ([], ["MISSING", "FILE", "FOLDER"])},
    "stability": {"--sessions": (["1", "2"], ["0", "-1", "abc", *HUGE]),
                  "--session-bytes": (["64", "200"], ["0", "1", "-1", *HUGE]),
                  "--heldout-bytes": (["64", "200"], ["0", "1", "-1", *HUGE]),
                  "--span": (["16", "64"], ["0", "-1", *HUGE]), "--input": TEXT_IN, "--heldout": TEXT_IN,
                  "--out": (["NEW", "FILE"], ["FOLDER", "", "MISSING/deeper"])},
}


def base(name: str, trained, here: Path) -> dict[str, str]:
    """The options of a run of `name` that works, as {option: value}; paths are in the folder `here`."""
    config, ckpt = trained
    if name == "data prepare text":
        return {"--input": "TEXT", "--out": "NEW", "--chunk_bytes": "256", "--shard_bytes": "1024"}
    if name == "data prepare audio-prosody":
        return {"--out": "NEW", "--size": "4", "--seconds": "0.3"}
    if name == "session":
        return {"--config": config, "--ckpt_path": ckpt, "--memory-state": "NEW", "--input": "TEXT", "--span": "64"}
    return {"--config": config, "--ckpt_path": ckpt, "--sessions": "2", "--session-bytes": "128",
            "--heldout-bytes": "128", "--span": "64", "--input": "TEXT"}


def case_folder(here: Path, state: Path) -> dict[str, Path]:
    """The paths a case may name: a text, an empty and a binary file, a folder holding a file, a memory state."""
    (here / "text.txt").write_text("Ada Obi's city is Lyon. Her dog is called Rex.\n" * 60)
    (here / "empty.txt").write_bytes(b"")
    (here / "blob.bin").write_bytes(bytes(range(256)) * 8)
    (here / "folder").mkdir()
    (here / "folder/kept.txt").write_text("a file the user keeps\n")
    shutil.copy(state, here / "state.mem")
    return {"TEXT": here / "text.txt", "EMPTY": here / "empty.txt", "BINARY": here / "blob.bin",
            "FOLDER": here / "folder", "FULL": here / "folder", "FILE": here / "text.txt",
            "STATE": here / "state.mem", "NEW": here / "new", "MISSING": here / "missing",
            "MISSING/deeper": here / "missing/deeper"}


@pytest.fixture(scope="module")
def state(trained_runs, tmp_path_factory) -> Path:
    return session_state(trained_runs["memory"], tmp_path_factory.mktemp("state"), "Ada Obi's city is Lyon.\n" * 20)


@pytest.mark.parametrize("index", range(FUZZ_EXAMPLES))
@pytest.mark.parametrize("name", OPTIONS)
def test_an_option_value_exits_0_or_2_and_changes_nothing(name, index, trained_runs, state, fuzz, tmp_path):
    rng = fuzz_rng("command", name, index)
    option = list(OPTIONS[name])[int(rng.integers(len(OPTIONS[name])))]
    inside, outside = OPTIONS[name][option]
    where = "inside" if inside and rng.random() < 0.35 else "outside"
    pool = inside if where == "inside" else outside
    options = {**base(name, trained_runs["memory"], tmp_path), option: pool[int(rng.integers(len(pool)))]}
    paths = case_folder(tmp_path, state)
    argv = [*name.split(), *(str(a) for key, value in options.items() for a in (key, paths.get(value, value)))]
    asked = [paths.get(options.get(key), options.get(key)) for key in ("--out", "--memory-state")]
    writes = [p for p in map(Path, filter(None, asked)) for p in ([p] if p.is_file() else p.rglob("*"))]
    fuzz(f"command option, {where} the range", f"{name} {option} {options[option]!r}", argv, watch=[tmp_path],
         writes=writes)
