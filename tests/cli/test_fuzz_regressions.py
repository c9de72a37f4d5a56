"""The fuzz suite's findings, kept as cases: each input below once ended in a traceback, an exit status 1 or a run
that never ended (RELIABILITY.md lists the defects and their fixes). Each now exits 2 with one message, at once.
"""

import json
import shutil

import pytest

from helpers import ONE_STEP, ROOT, run_cli

pytestmark = pytest.mark.slow  # a few train a step before they stop
BIG, HUGE = str(2**40), str(2**63)
BACKBONE, PM = "--model.init_args.backbone.init_args.", "--model.init_args.backbone.init_args.pm.init_args."
OVERRIDES = [  # (debug config, option, value, what the message says)
    ("quickstart", BACKBONE + "vocab_size", "128", "outside the backbone's"),  # IndexError at the first step
    ("transformer", BACKBONE + "vocab_size", "0", "vocab_size=0 must be >= 1"),
    ("quickstart", BACKBONE + "d_ff", "-1", "d_ff=-1 must be >= 1"),
    ("quickstart", BACKBONE + "dropout", "-1", "dropout=-1.0 must be in [0, 1)"),
    ("quickstart", BACKBONE + "blocks", BIG, "layers in all"),  # built layer after layer for ever
    ("quickstart", BACKBONE + "d_model", BIG, "out of memory"),
    ("quickstart", BACKBONE + "window", HUGE, "too large"),
    ("quickstart", PM + "neuromodulator.init_args.hidden", "-1", "hidden=-1 must be >= 1"),
    ("sudoku", "--model.init_args.d_model", "0", "d_model=0 must be >= 1"),  # ZeroDivisionError
    ("sudoku", "--model.init_args.T", BIG, "network calls per supervision step"),  # a step never ended
    ("sudoku", "--model.init_args.lr", "-1", "lr=-1.0 must be > 0"),
    ("sudoku", "--data.init_args.batch_size", HUGE, "too large"),
    ("sudoku", "--data.init_args.train_size", HUGE, "too large"),
    ("maze", "--model.init_args.network.init_args.heads", "0", "divisible by heads=0"),
    ("maze", "--model.init_args.seq_len", HUGE, "too large"),
    ("maze", "--data.init_args.size", BIG, "size=1099511627776 must be in 3..1024"),  # generated for ever
    ("maze", "--data.init_args.train_size", BIG, "out of memory"),  # queued 2^40 mazes to a process pool
    ("jepa_audio", "--model.init_args.encoder.init_args.bands", str(-(2**31)), "bands=-2147483648"),
    ("jepa_audio", "--model.init_args.predictor_width", HUGE, "too large"),
    ("jepa_audio", "--data.init_args.seed", "-1", "seed=-1 >= 0"),
    ("jepa_audio", "--data.init_args.num_workers", "-1", "num_workers=-1 >= 0"),
    ("memory_recall", "--data.init_args.seed", "-1", "seed=-1 >= 0"),
    ("transformer", "--data.init_args.max_eval_windows", "0", "max_eval_windows=0"),  # StopIteration
    ("transformer", "--data.init_args.train_windows", "-1", "train_windows=-1"),
]


@pytest.mark.parametrize("config, option, value, message", OVERRIDES)
def test_a_config_override_the_fuzz_found(config, option, value, message, fuzz, tmp_path):
    argv = ["fit", "--config", str(ROOT / f"configs/debug/{config}.yaml"), *ONE_STEP, option, value]
    assert fuzz("regression", f"{config}: {option} {value}", argv, watch=[tmp_path], limit_s=30) == 2
    assert message in fuzz.text


def test_a_manifest_of_another_shape_or_not_text(trained_runs, fuzz, tmp_path):
    config, ckpt = trained_runs["memory"]
    (tmp_path / "text.txt").write_text("The quick brown fox jumps over the lazy dog. " * 100)
    assert run_cli("data", "prepare", "text", "--input", str(tmp_path / "text.txt"), "--out", str(tmp_path / "s"),
                   "--chunk_bytes", "512") == 0
    manifest = tmp_path / "s/ember-shards.json"
    for content, message in ((b"[1, 2]", "holds a JSON list"), (b'{"train": {"shards": [5]}, "val": {"shards": []}}',
                                                               "which are not file names"), (b"\xff\xfe{", "utf-8")):
        manifest.write_bytes(content)
        argv = ["validate", "--config", config, "--ckpt_path", ckpt, "--data.init_args.path", str(tmp_path / "s"),
                "--trainer.logger", "false"]
        assert fuzz("regression", f"manifest {content!r}", argv, watch=[tmp_path]) == 2
        assert message in fuzz.text


def test_an_empty_audio_shard_and_a_binary_maze_csv(fuzz, tmp_path):
    assert run_cli("data", "prepare", "audio-prosody", "--out", str(tmp_path / "a"), "--size", "4", "--seconds",
                   "1.0") == 0
    (tmp_path / "a/val-000000.tar").write_bytes(b"")
    argv = ["fit", "--config", str(ROOT / "configs/debug/jepa_audio.yaml"), *ONE_STEP, "--data.init_args.path",
            str(tmp_path / "a")]
    assert fuzz("regression", "audio shard emptied", argv, watch=[tmp_path]) == 2
    assert "cannot be read" in fuzz.text  # was tarfile.ReadError
    (tmp_path / "maze.csv").write_bytes(bytes(range(128, 256)) * 4)
    argv = ["fit", "--config", str(ROOT / "configs/debug/maze.yaml"), *ONE_STEP, "--data.init_args.train_path",
            str(tmp_path / "maze.csv")]
    assert fuzz("regression", "maze CSV of binary bytes", argv, watch=[tmp_path]) == 2
    assert "is not text (UTF-8)" in fuzz.text  # was UnicodeDecodeError


def test_command_options_the_fuzz_found(trained_runs, fuzz, tmp_path):
    config, ckpt = trained_runs["memory"]
    (tmp_path / "file.txt").write_text(json.dumps({"a": "file the user keeps"}))
    (tmp_path / "folder").mkdir()
    cases = [(["data", "prepare", "audio-prosody", "--out", str(tmp_path / "a"), "--seconds", "1e30"],
              "seconds=1e+30 must be in (0, 600]"),  # numpy's "Maximum allowed size exceeded"
             (["data", "prepare", "text", "--input", str(ROOT / "README.md"), "--out", str(tmp_path / "file.txt")],
              "is a file"),  # NotADirectoryError
             (["stability", "--config", config, "--ckpt_path", ckpt, "--sessions", "1", "--out",
               str(tmp_path / "folder")], "is a folder")]  # IsADirectoryError, after the whole run
    for argv, message in cases:
        assert fuzz("regression", " ".join(argv[:3]), argv, watch=[tmp_path]) == 2
        assert message in fuzz.text
    shutil.rmtree(tmp_path / "folder")


def test_an_ablation_table_of_another_shape(trained_runs, fuzz, tmp_path):
    config, _ = trained_runs["memory"]
    (tmp_path / "ablate").mkdir()
    table = {"configs": [config], "extra": [], "variants": -1, "rows": []}  # was TypeError: 'int' is not iterable
    (tmp_path / "ablate/ablation.json").write_text(json.dumps(table))
    argv = ["ablate", "--config", config, "--variant", "quick=,--trainer.max_steps=none", "--out",
            str(tmp_path / "ablate"), "--resume"]
    assert fuzz("regression", "ablation.json variants -1", argv, watch=[tmp_path]) == 2
    assert "is not a readable ablation table" in fuzz.text
