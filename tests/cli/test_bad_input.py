"""Bad input: one clear message naming the fix, exit status 2, nothing written lost."""

from pathlib import Path

import pytest
import torch
import yaml

from helpers import DEBUG, ROOT, fit_args, mlflow_rows, run_cli, run_folder


def _config(tmp_path, edit) -> str:
    config = yaml.safe_load(open(DEBUG))
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_unknown_plugin_suggests_the_near_name(tmp_path, caplog):
    def edit(c):
        c["model"]["init_args"]["backbone"]["class_path"] = "NMLBackbon"

    assert run_cli(*fit_args(tmp_path, config=_config(tmp_path, edit))) == 2
    assert "unknown plugin 'NMLBackbon'" in caplog.text and "did you mean NMLBackbone" in caplog.text


@pytest.mark.slow
def test_heads_that_do_not_divide_d_model(tmp_path, caplog):
    def edit(c):
        c["model"]["init_args"]["backbone"]["init_args"]["heads"] = 5

    assert run_cli(*fit_args(tmp_path, config=_config(tmp_path, edit))) == 2
    assert "d_model=32 is not divisible by heads=5" in caplog.text


@pytest.mark.slow
def test_missing_data_path(tmp_path, caplog):
    assert run_cli(*fit_args(tmp_path, "--data.init_args.path", str(tmp_path / "nope.txt"))) == 2
    assert "does not exist" in caplog.text and "data.path" in caplog.text


@pytest.mark.slow
def test_data_path_without_text(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    assert run_cli(*fit_args(tmp_path, "--data.init_args.path", str(tmp_path / "empty"))) == 2
    assert "holds no text" in caplog.text


def test_unknown_config_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*fit_args(tmp_path, "--model.init_args.backbone.init_args.d_modle", "64"))
    assert exit_info.value.code == 2
    assert "d_modle" in capsys.readouterr().err


@pytest.mark.slow
def test_checkpoint_from_another_composite(tmp_path, caplog):
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2")) == 0
    ckpt = run_folder(tmp_path) / "checkpoints/last.ckpt"

    def edit(c):
        c["model"]["init_args"]["backbone"] = {"class_path": "TransformerBackbone",
                                               "init_args": {"d_model": 32, "layers": 2, "heads": 4}}

    code = run_cli("validate", "--config", _config(tmp_path, edit), "--ckpt_path", str(ckpt),
                   "--trainer.logger.init_args.run_dir", str(tmp_path / "eval"))
    assert code == 2
    assert "different composite" in caplog.text and "backbone: checkpoint has NMLBackbone" in caplog.text


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, caplog):
    def edit(c):
        c["model"]["init_args"]["backbone"] = {"class_path": "helpers.NaNAfterBackbone",
                                               "init_args": {"nan_after": 14}}
        c["model"]["init_args"]["tbptt_chunk"] = None
        c["trainer"]["val_check_interval"] = 5
        c["checkpoint"] = {"every_n_train_steps": 5}

    assert run_cli(*fit_args(tmp_path, config=_config(tmp_path, edit))) == 2
    assert "loss became nan at step 14" in caplog.text
    last = run_folder(tmp_path) / "checkpoints/last.ckpt"
    assert str(last) in caplog.text
    import torch

    assert torch.load(last, weights_only=False)["global_step"] == 10


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_is_refused_before_any_run_starts(subcommand, tmp_path, caplog):
    runs = tmp_path / "runs"
    code = run_cli(subcommand, "--config", str(ROOT / "configs/debug/memory_recall.yaml"),
                   "--trainer.logger.init_args.run_dir", str(runs))
    assert code == 2 and "an untrained model (random weights)" in caplog.text and "--ckpt_path" in caplog.text
    assert not runs.exists()  # nothing logged to MLflow for random weights


@pytest.mark.parametrize("argv", [["session", "--config", "c.yaml", "--ckpt_path", "k.ckpt", "--memory_state", "STATE",
                                   "--input", "-", "--span", "-5"],
                                  ["stability", "--config", "c.yaml", "--ckpt_path", "k.ckpt", "--sessions", "0"],
                                  ["data", "prepare", "text", "--input", "STATE", "--out", "OUT", "--chunk_bytes", "0"],
                                  ["data", "prepare", "audio-prosody", "--out", "OUT", "--seconds", "0"]])
def test_a_size_below_one_stops_at_the_command_line_and_touches_nothing(argv, tmp_path, capsys):
    state = tmp_path / "me.mem"
    state.write_bytes(b"what the last session learned")
    argv = [str(state) if a == "STATE" else str(tmp_path / "out") if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as stop:
        run_cli(*argv)
    assert stop.value.code == 2 and "does not conform to restriction v>0" in capsys.readouterr().err
    assert state.read_bytes() == b"what the last session learned" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY random bytes", b"truncated"])
@pytest.mark.parametrize("command", ["test", "session", "init_from"])
def test_an_unreadable_checkpoint_is_one_message_naming_the_file(content, command, tmp_path, caplog):
    ckpt = tmp_path / "bad.ckpt"
    ckpt.write_bytes(content)
    config = str(ROOT / "configs/debug/memory_recall.yaml")
    argv = {"test": ["test", "--config", config, "--ckpt_path", str(ckpt)],
            "session": ["session", "--config", config, "--ckpt_path", str(ckpt), "--memory_state",
                        str(tmp_path / "m.mem"), "--input", str(ckpt)],
            "init_from": ["fit", "--config", config, "--model.init_args.init_from", str(ckpt),
                          "--trainer.logger.init_args.run_dir", str(tmp_path / "runs")]}[command]
    assert run_cli(*argv) == 2
    assert f"{ckpt} is not a checkpoint Ember can read safely" in caplog.text
    assert not (tmp_path / "m.mem").exists()


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, caplog):
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Path}, ckpt)  # a pickled class: loading it imports and runs code
    config = str(ROOT / "configs/debug/memory_recall.yaml")
    assert run_cli("test", "--config", config, "--ckpt_path", str(ckpt)) == 2
    assert "is not a checkpoint Ember can read safely" in caplog.text


@pytest.mark.slow
def test_a_diverging_jepa_fit_stops_at_the_nan_and_saves_no_nan_checkpoint(tmp_path, caplog):
    """The guard covers every module `ember fit` trains (here AudioJEPA), not only EmberModel."""
    runs = tmp_path / "runs"
    assert run_cli("fit", "--config", str(ROOT / "configs/debug/jepa_audio.yaml"), "--model.init_args.lr", "1e3",
                   "--trainer.max_steps", "20", "--trainer.val_check_interval", "3",
                   "--trainer.logger.init_args.run_dir", str(runs)) == 2
    assert "became nan at step" in caplog.text
    for ckpt in runs.rglob("*.ckpt"):
        assert all(torch.isfinite(v).all() for v in torch.load(ckpt, weights_only=True)["state_dict"].values())


@pytest.mark.parametrize("option, first_line", [
    (["--model.init_args.lrr", "1"], "error: EmberModel has no option 'lrr': did you mean lr?"),
    (["--trainer.max_stepz", "3"], "error: no option --trainer.max_stepz: did you mean --trainer.max_steps"),
    (["--trainer.max_steps", "abc"], 'error: Parser key "trainer.max_steps":')])
def test_a_command_line_mistake_is_a_short_message_first_with_the_near_names(option, first_line, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli("fit", "--config", str(ROOT / "configs/debug/quickstart.yaml"), *option)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(first_line)
    assert "usage:" not in err and err.rstrip().endswith(" fit --help")  # the prog is ember from the shell


@pytest.mark.slow
@pytest.mark.parametrize("extra, env, said", [
    (("--trainer.strategy", "fsdp", "--trainer.devices", "2"), {}, "configs/cloud/fsdp2_cpu.yaml"),
    (("--trainer.devices", "0"), {}, "the trainer settings were refused: `Trainer(devices='0')`"),
    (("--trainer.num_nodes", "2", "--trainer.strategy", "ddp"), {"NODE_RANK": "5"}, "NODE_RANK=5 is not a node"),
    (("--trainer.num_nodes", "2", "--trainer.strategy", "ddp"), {"GROUP_RANK": "x"}, "GROUP_RANK=x is not a node"),
], ids=["fsdp-on-cpu", "no-devices", "node-rank-past-num-nodes", "group-rank-not-a-number"])
def test_trainer_settings_lightning_or_the_cluster_refuse_are_one_message(extra, env, said, tmp_path, caplog,
                                                                          monkeypatch):
    """Before any run starts: no traceback, no MLflow run, and never a wait for nodes that do not exist."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "2", *extra)) == 2
    assert said in caplog.text and "Traceback" not in caplog.text
    assert not (tmp_path / "mlflow.db").exists() or not mlflow_rows(tmp_path, "select * from runs")
