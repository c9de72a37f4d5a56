"""End to end: `ember fit` on the debug config, then validate/test/predict on its checkpoint."""

import math

import pytest
import torch

from helpers import ROOT, fit_args, mlflow_rows, run_cli, run_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs")
    assert run_cli(*fit_args(run_dir)) == 0
    return run_dir, run_folder(run_dir)


@pytest.mark.slow
def test_fit_writes_checkpoint_config_and_mlflow_run(trained):
    run_dir, folder = trained
    assert (folder / "checkpoints/best.ckpt").is_file() and (folder / "checkpoints/last.ckpt").is_file()
    assert "NMLBackbone" in (folder / "config.yaml").read_text()
    metrics = {k for (k,) in mlflow_rows(run_dir, "select distinct key from metrics")}
    assert {"train/loss", "train/bpb", "val/loss", "val/bpb", "data/unigram_bpb"} <= metrics
    artifacts = {p.relative_to(run_dir / "artifacts").as_posix() for p in (run_dir / "artifacts").rglob("*.*")}
    assert any(a.endswith("config.yaml") for a in artifacts)
    assert any(a.endswith(".ckpt") for a in artifacts)
    assert any(a.endswith("plots/learning_curves.png") for a in artifacts)
    assert (folder / "learning_curves.png").stat().st_size > 10_000
    params = dict(mlflow_rows(run_dir, "select key, value from params"))
    assert params["model.backbone.d_model"] == "32"


@pytest.mark.slow
def test_loss_falls(trained):
    run_dir, _ = trained
    # validation loss: the same held-out batches at steps 10 and 20, so the drop is not batch noise
    val = [v for (v,) in mlflow_rows(run_dir, "select value from metrics where key='val/loss' order by step")]
    assert len(val) == 2
    assert val[1] < val[0] - 0.2  # measured 4.71 -> 4.26 nats
    assert val[1] < math.log(256) - 1.0  # an untrained model guesses uniformly: 5.55 nats


@pytest.mark.slow
def test_checkpoint_carries_the_composite_signature(trained):
    _, folder = trained
    ckpt = torch.load(folder / "checkpoints/last.ckpt", weights_only=False)
    assert ckpt["ember"]["slots"] == {"backbone": "NMLBackbone", "sensory": None, "reasoning": None,
                                      "consolidator": None}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_evaluation_commands_reload_the_checkpoint(trained, command, tmp_path, caplog):
    _, folder = trained
    code = run_cli(command, "--config", str(folder / "config.yaml"), "--ckpt_path",
                   str(folder / "checkpoints/best.ckpt"), "--trainer.logger.init_args.run_dir", str(tmp_path))
    assert code == 0
    if command == "predict":
        assert "prompt 'The ' ->" in caplog.text
        (kept,) = tmp_path.glob("artifacts/*/artifacts/predictions.txt")  # the predict run is not empty
        assert kept.read_text().startswith("'The ' -> ")


@pytest.mark.slow
def test_predict_options_given_with_a_checkpoint_take_effect(trained, tmp_path, caplog):
    _, folder = trained
    assert run_cli("predict", "--config", str(folder / "config.yaml"), "--ckpt_path",
                   str(folder / "checkpoints/best.ckpt"), "--trainer.logger.init_args.run_dir", str(tmp_path),
                   "--model.init_args.generate_tokens", "3", "--model.init_args.temperature", "0") == 0
    completions = [r.args[1] for r in caplog.records if r.getMessage().startswith("prompt ")]
    assert completions and all(len(c) <= 3 for c in completions)  # the default is 200 bytes


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted((ROOT / "configs/debug").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_debug_config_fits_a_few_steps(config, tmp_path):
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
                             config=str(config))) == 0
    assert (run_folder(tmp_path) / "checkpoints/last.ckpt").is_file()


@pytest.mark.slow
def test_default_root_dir_decides_where_the_run_goes_and_nothing_lands_in_the_working_folder(tmp_path, monkeypatch):
    here, job = tmp_path / "here", tmp_path / "shared" / "job7"
    here.mkdir()
    monkeypatch.chdir(here)
    assert run_cli("fit", "--config", str(ROOT / "configs/debug/quickstart.yaml"), "--trainer.max_steps", "2",
                   "--trainer.val_check_interval", "2", "--trainer.default_root_dir", str(job)) == 0
    folder = run_folder(job)
    assert (job / "mlflow.db").is_file() and (folder / "checkpoints/last.ckpt").is_file()
    assert (folder / "config.yaml").is_file() and (folder / "learning_curves.png").is_file()
    assert list(here.iterdir()) == []
