"""AudioJEPA (plugins/sensory/jepa.py): a frozen target, a falling loss, collapse flagged, the debug config."""

import logging
import math

import numpy as np
import pytest
import torch

from ember.data_modules.prosody_tasks import make_example
from ember.ops.jepa import embedding_spread
from ember.plugins.sensory.encoder import SpikingAudioEncoder
from ember.plugins.sensory.jepa import AudioJEPA
from helpers import ROOT, fit_args, mlflow_rows, run_cli
from helpers import TINY_AUDIO_ENCODER as TINY


def tiny_jepa(**kwargs) -> AudioJEPA:
    return AudioJEPA(SpikingAudioEncoder(**TINY), predictor_width=32, predictor_depth=1, mask_blocks=2, block_len=3,
                     warmup_steps=0, **kwargs)


@pytest.mark.slow
def test_jepa_target_is_frozen_and_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny_jepa()
    signal = torch.from_numpy(np.stack([make_example(np.random.default_rng(i), seconds=1.0).signal
                                        for i in range(4)]))
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    optimizer = model.configure_optimizers()["optimizer"]
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in model.target_encoder.parameters()}
    before = [p.clone() for p in model.target_encoder.parameters()]
    losses = []
    for _ in range(12):
        loss, targets = model.jepa_step(signal, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all(p.grad is None and torch.equal(p, b) for p, b in zip(model.target_encoder.parameters(), before))
    assert embedding_spread(targets) > 0.1
    assert model(signal).tokens.shape == (4, 25, 32)


def test_collapse_is_measured_and_flagged(caplog):
    assert embedding_spread(torch.ones(2, 5, 8) + torch.arange(8.0)) == pytest.approx(0.0, abs=1e-6)
    assert embedding_spread(torch.randn(4, 16, 32)) > 0.8
    model = tiny_jepa(collapse_threshold=0.1)
    with caplog.at_level(logging.WARNING):
        assert model._flag_collapse(0.01) and model._flag_collapse(0.02)
        assert not model._flag_collapse(0.5)
    assert caplog.text.count("representation collapse") == 1


@pytest.mark.slow
def test_debug_config_fits_and_logs_the_sensory_metrics(tmp_path):
    config = str(ROOT / "configs/debug/jepa_audio.yaml")
    assert run_cli(*fit_args(tmp_path, config=config)) == 0
    keys = {k for (k,) in mlflow_rows(tmp_path, "select distinct key from metrics")}
    assert {"train/loss", "val/loss", "jepa/collapse_std", "sensory/spike_rate", "jepa/ema_momentum"} <= keys
    momenta = [v for (v,) in mlflow_rows(tmp_path, "select value from metrics where key='jepa/ema_momentum' "
                                                   "order by step")]
    assert momenta[0] == pytest.approx(0.996) and momenta == sorted(momenta)
