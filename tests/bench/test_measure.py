"""ember.bench.measure: --contexts parsing, contexts skipped past the limit or out of memory, compile options.

Timings are never asserted.
"""

import pytest

from ember.bench import measure
from ember.bench.measure import BenchOptions, measure_decode, measure_training_or_skip, parse_contexts
from ember.bench.run import build_variant
from ember.errors import EmberConfigError
from helpers import ROOT

NML = str(ROOT / "configs/debug/bench_nml.yaml")


@pytest.mark.parametrize("text", ["2048,abc", "", "0,16", "1k"])
def test_bad_contexts_name_the_expected_form(text):
    with pytest.raises(EmberConfigError, match="e.g. --contexts 2048,8192,16384"):
        parse_contexts(text)


def test_contexts_past_the_limit_or_out_of_memory_are_skipped(monkeypatch):
    model = build_variant(["--config", NML])
    model.backbone.max_context = 48
    opts = BenchOptions(contexts=[32, 64], steps=1, warmup=0)
    assert "max_context 48" in measure_training_or_skip(model, 64, opts, None)["skipped"]
    decoded = measure_decode(model, [32, 64], tokens=2, warmup=0)
    assert decoded[32]["state_bytes"] > 0 and "max_context 48" in decoded[64]["skipped"]

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")

    monkeypatch.setattr(measure, "measure_training", out_of_memory)
    assert measure_training_or_skip(model, 32, opts, None)["skipped"].startswith("out of memory")


@pytest.mark.parametrize("compile,periods,expected", [("false", "auto", None), ("true", "auto", "default"),
                                                       ("true", "eager", None), ("false", "reduce-overhead",
                                                                                 "reduce-overhead")])
def test_plasticity_periods_compile_with_the_model_unless_told(compile, periods, expected):
    assert BenchOptions(device="cpu", compile=compile, compile_periods=periods).resolved_compile_periods() == expected
