"""`ember bench` runs on tiny models, writes its files, measures state growth, skips what cannot run.

Timings are never asserted: only that they were measured and written.
"""

import json
import sqlite3
from pathlib import Path

import pytest

from ember import bench
from ember.bench.measure import BenchOptions, measure_decode, measure_training_or_skip, parse_contexts
from ember.bench.run import build_variant
from ember.cli.main import main
from ember.errors import EmberConfigError

ROOT = Path(__file__).resolve().parents[1]
NML = str(ROOT / "configs/debug/bench_nml.yaml")
TRANSFORMER = str(ROOT / "configs/debug/bench_transformer.yaml")
ROW_KEYS = {"variant", "context", "params", "train_tokens_per_s", "train_step_ms_median", "train_peak_mem_bytes",
            "train_first_step_s", "decode_ms_median", "decode_tokens_per_s", "prefill_tokens_per_s", "state_bytes",
            "train_vs_ref", "decode_vs_ref", "mem_vs_ref"}


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    status = main(["bench", "--config", NML, TRANSFORMER, "--contexts", "32,64", "--steps", "1", "--warmup", "0",
                   "--decode-tokens", "2", "--out", str(out), "--run_dir", str(out / "runs")])
    assert status == 0
    return out


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
    assert "| bench_nml | 64 |" in table and "state/stream" in table


def test_bench_logs_files_to_mlflow(bench_out):
    with sqlite3.connect(bench_out / "runs/mlflow.db") as db:
        (status,) = db.execute("select r.status from runs r join experiments e on r.experiment_id = "
                               "e.experiment_id where e.name = 'bench'").fetchone()
        keys = {k for (k,) in db.execute("select distinct key from metrics")}
    assert status == "FINISHED"
    assert "bench/bench_nml/train_tokens_per_s" in keys and "bench/bench_transformer/state_bytes" in keys
    assert {p.name for p in (bench_out / "runs").rglob("bench/*")} >= {"bench.json", "bench.md", "bench.png"}


def test_state_is_constant_for_nml_and_grows_for_the_transformer(bench_out):
    rows = json.loads((bench_out / "bench.json").read_text())["rows"]
    state = {(r["variant"], r["context"]): r["state_bytes"] for r in rows}
    assert state[("bench_nml", 32)] == state[("bench_nml", 64)]
    # full attention keeps every key and value: 32 more tokens x 2 layers x (k and v: 2 x 32 float32 + 1 valid flag)
    assert state[("bench_transformer", 64)] - state[("bench_transformer", 32)] == 32 * 2 * (2 * 32 * 4 + 1)


@pytest.mark.parametrize("text", ["2048,abc", "", "0,16", "1k"])
def test_bad_contexts_name_the_expected_form(text):
    with pytest.raises(EmberConfigError, match="e.g. --contexts 2048,8192,16384"):
        parse_contexts(text)


def test_bad_contexts_fail_before_any_model_is_built(caplog, tmp_path):
    assert main(["bench", "--config", NML, "--contexts", "64,x", "--out", str(tmp_path)]) == 2
    assert "--contexts '64,x'" in caplog.text
    assert not (tmp_path / "bench.json").exists()


def test_contexts_past_the_limit_or_out_of_memory_are_skipped(monkeypatch):
    model = build_variant(["--config", NML])
    model.backbone.max_context = 48
    opts = BenchOptions(contexts=[32, 64], steps=1, warmup=0)
    assert "max_context 48" in measure_training_or_skip(model, 64, opts, None)["skipped"]
    decoded = measure_decode(model, [32, 64], tokens=2, warmup=0)
    assert decoded[32]["state_bytes"] > 0 and "max_context 48" in decoded[64]["skipped"]

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    monkeypatch.setattr(bench, "measure_training", out_of_memory)
    assert measure_training_or_skip(model, 32, opts, None)["skipped"].startswith("out of memory")


def test_variant_names_must_differ(tmp_path):
    assert main(["bench", "--config", NML, "--variant", f"bench_nml={TRANSFORMER}", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("compile,periods,expected", [("false", "auto", None), ("true", "auto", "default"),
                                                       ("true", "eager", None), ("false", "reduce-overhead",
                                                                                 "reduce-overhead")])
def test_plasticity_periods_compile_with_the_model_unless_told(compile, periods, expected):
    assert BenchOptions(device="cpu", compile=compile, compile_periods=periods).resolved_compile_periods() == expected
