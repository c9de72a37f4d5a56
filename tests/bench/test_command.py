"""`ember bench` runs on tiny models, writes its files, measures state growth, refuses bad options.

Timings are never asserted: only that they were measured and written.
"""

import json
import sqlite3
from pathlib import Path

import pytest

from ember.cli.main import main
from helpers import ROOT

NML = str(ROOT / "configs/debug/bench_nml.yaml")
TRANSFORMER = str(ROOT / "configs/debug/bench_transformer.yaml")
ROW_KEYS = {"variant", "context", "params", "train_tokens_per_s", "train_step_ms_median", "train_peak_mem_bytes",
            "train_first_step_s", "decode_ms_median", "decode_tokens_per_s", "prefill_tokens_per_s", "state_bytes",
            "train_vs_ref", "decode_vs_ref", "mem_vs_ref", "ops_per_period"}


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    status = main(["bench", "--config", NML, TRANSFORMER, "--contexts", "32,64", "--steps", "1", "--warmup", "0",
                   "--decode-tokens", "2", "--out", str(out), "--run_dir", str(out / "runs")])
    assert status == 0
    return out


@pytest.mark.slow
def test_bench_writes_json_table_and_plot(bench_out):
    result = json.loads((bench_out / "bench.json").read_text())
    assert {"device", "dtype", "compile", "contexts", "peak_mem_method", "commit"} <= set(result["meta"])
    assert result["reference"] == "bench_transformer"
    assert [(r["variant"], r["context"]) for r in result["rows"]] == [
        ("bench_nml", 32), ("bench_nml", 64), ("bench_transformer", 32), ("bench_transformer", 64)]
    for row in result["rows"]:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["train_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0
    assert all(r["train_vs_ref"] == 1.0 for r in result["rows"] if r["variant"] == "bench_transformer")
    assert (bench_out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (bench_out / "bench.md").read_text()
    assert "| bench_nml | 64 |" in table and "state/stream" in table and "| ops/period |" in table
    assert all(r["ops_per_period"] == 0 for r in result["rows"])  # neither model has a slot memory


@pytest.mark.slow
def test_bench_logs_files_to_mlflow(bench_out):
    with sqlite3.connect(bench_out / "runs/mlflow.db") as db:
        (status,) = db.execute("select r.status from runs r join experiments e on r.experiment_id = "
                               "e.experiment_id where e.name = 'bench'").fetchone()
        keys = {k for (k,) in db.execute("select distinct key from metrics")}
    assert status == "FINISHED"
    assert "bench/bench_nml/train_tokens_per_s" in keys and "bench/bench_transformer/state_bytes" in keys
    assert {p.name for p in (bench_out / "runs").rglob("bench/*")} >= {"bench.json", "bench.md", "bench.png"}


@pytest.mark.slow
def test_state_is_constant_for_nml_and_grows_for_the_transformer(bench_out):
    rows = json.loads((bench_out / "bench.json").read_text())["rows"]
    state = {(r["variant"], r["context"]): r["state_bytes"] for r in rows}
    assert state[("bench_nml", 32)] == state[("bench_nml", 64)]
    # full attention keeps every key and value: 32 more tokens x 2 layers x (k and v: 2 x 32 float32 + 1 valid flag)
    assert state[("bench_transformer", 64)] - state[("bench_transformer", 32)] == 32 * 2 * (2 * 32 * 4 + 1)


def test_bad_contexts_fail_before_any_model_is_built(caplog, tmp_path):
    assert main(["bench", "--config", NML, "--contexts", "64,x", "--out", str(tmp_path)]) == 2
    assert "--contexts '64,x'" in caplog.text
    assert not (tmp_path / "bench.json").exists()


def test_variant_names_must_differ(tmp_path):
    assert main(["bench", "--config", NML, "--variant", f"bench_nml={TRANSFORMER}", "--out", str(tmp_path)]) == 2
