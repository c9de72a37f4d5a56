"""The linear probe of a sensory encoder (benchmarks/analysis/probe.py) on the binding data."""

import pytest
import torch

from helpers import ROOT, load_script


@pytest.mark.slow
def test_probe_logistic_regression_separates_what_is_separable_and_not_noise():
    probe = load_script("benchmarks/analysis/probe.py")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g, dtype=torch.float64)
    y = (x[:, 2] - 0.5 * x[:, 4] > 0).long()
    w = probe.fit_logistic(x, y, 2, 1e-3)
    x_new = torch.randn(400, 6, generator=g, dtype=torch.float64)
    assert (probe.predict(w, x_new) == (x_new[:, 2] - 0.5 * x_new[:, 4] > 0).long()).double().mean() > 0.9
    noise = torch.randint(0, 2, (400,), generator=g)
    w = probe.fit_logistic(x, torch.randint(0, 2, (80,), generator=g), 2, probe.choose_penalty(x, y, 2))
    assert abs((probe.predict(w, x_new) == noise).double().mean().item() - 0.5) < 0.1
    assert probe.choose_penalty(x, y, 2) in probe.PENALTIES


@pytest.mark.slow
def test_probe_script_scores_the_debug_binding_config_and_refuses_two_tasks(capsys):
    probe = load_script("benchmarks/analysis/probe.py")
    args = ["--config", str(ROOT / "configs/debug/binding.yaml"), "--data.init_args.tasks=[question]",
            "--data.init_args.train_size=20", "--data.init_args.test_size=12", "--data.init_args.seconds=0.3"]
    assert probe.main([*args, "--seeds", "0,1", "--segments", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["0", "1", "mean"]
    assert lines[1].split("|")[2:4] == [" 20 ", " 12 "]
    accs = [float(line.split("|")[5].strip().strip("*")) for line in lines[1:]]
    assert all(0 <= a <= 1 for a in accs) and accs[2] == pytest.approx((accs[0] + accs[1]) / 2, abs=1e-3)
    assert probe.main([*args, "--config", str(ROOT / "configs/ablate/binding_mel.yaml")]) == 0  # an overlay merges
    assert "| 0 | 20 | 12 |" in capsys.readouterr().out
    assert probe.main([*args, "--data.init_args.tasks=[question,arousal]"]) == 2
    assert "reads one prosody task" in capsys.readouterr().err
    assert probe.main([*args, "--segments", "500"]) == 2
    assert "lower --segments" in capsys.readouterr().err
