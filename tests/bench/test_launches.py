"""ember.bench.launches: ops per plasticity period are per period (not per call), sum over a model's memories, leave
the memory as it was, and reach `ember bench`'s rows."""

import pytest
import torch
from torch import nn

from ember.bench.launches import CountOps, PeriodOps, memory_ops_per_period, ops_per_period
from ember.bench.measure import BenchOptions
from ember.bench.run import build_variant, measure_variant
from ember.errors import EmberConfigError
from ember.plugins.memory.episodic import EpisodicStore
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.learned import LearnedNeuromodulator
from helpers import ROOT

NML_PM = str(ROOT / "configs/debug/bench_nml_pm.yaml")


def _pm(d: int = 16) -> LowRankPM:
    return LowRankPM(d, lambda d: LearnedNeuromodulator(d, hidden=8), slots=4, period=8)


def _em(d: int = 16) -> EpisodicStore:
    return EpisodicStore(d, lambda d: LearnedNeuromodulator(d, hidden=8), items=16, top_k=2, period=8, writes=2)


def test_count_ops_tells_views_apart():
    x = torch.randn(4, 6)
    with CountOps() as count:
        (x.view(6, 4) + 1).t().sum()
    assert (count.ops, count.views, count.non_view) == (4, 2, 2)  # view, add, t, sum


@pytest.mark.parametrize("make", [_pm, _em], ids=["pm", "em"])
def test_the_figure_is_per_period_not_per_call(make):
    memory = make()
    one, other = memory_ops_per_period(memory, (4, 8)), memory_ops_per_period(memory, (3, 5), batch=1)
    assert one == other  # two pairs of lengths (and batches), one per-period figure: the call's fixed cost is gone
    assert 100 < one.non_view < one.ops  # hundreds of small ops, some of them views


def test_a_model_sums_its_memories_and_one_without_counts_zero():
    one = ops_per_period(_pm())
    assert ops_per_period(nn.ModuleList([_pm(), _pm(24)])) == PeriodOps(2 * one.ops, 2 * one.non_view)
    assert ops_per_period(nn.ModuleList([_pm(), _em()])) == one + memory_ops_per_period(_em())
    assert ops_per_period(nn.Linear(4, 4)) == PeriodOps(0.0, 0.0)


@pytest.mark.slow  # torch.compile's first use imports dynamo (~2 s)
def test_counting_leaves_grads_compile_mode_and_random_state_as_they_were():
    memory = _pm()
    eager = memory_ops_per_period(memory)
    memory.compile_periods("default")  # lazy: nothing compiles unless a whole period runs compiled
    grad = torch.ones_like(memory.out.weight)
    memory.out.weight.grad = grad
    rng = torch.get_rng_state()
    assert memory_ops_per_period(memory) == eager  # counted eagerly although the memory compiles its periods
    assert memory.compile_mode == "default" and memory.out.weight.grad is grad
    assert memory.qkv.weight.grad is None and torch.equal(torch.get_rng_state(), rng)


def test_lengths_must_be_past_the_first_periods():
    with pytest.raises(EmberConfigError, match=r"e.g. \(4, 8\)"):
        memory_ops_per_period(_pm(), (2, 4))


@pytest.mark.slow
def test_bench_rows_carry_the_model_s_ops_per_period():
    opts = BenchOptions(contexts=[32], steps=1, warmup=0, decode_tokens=1, device="cpu", compile="false")
    info, rows = measure_variant("pm", ["--config", NML_PM], opts)
    expected = ops_per_period(build_variant(["--config", NML_PM])).non_view
    assert info["ops_per_period"] == rows[0]["ops_per_period"] == expected > 0
