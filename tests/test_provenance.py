"""ember.provenance: runs a person can tell apart, what they came from, and evaluations linked to their training run."""

import random
from datetime import datetime
from pathlib import Path

import pytest

from ember.provenance import checkpoint_run_id, git_state, run_name
from helpers import fit_args, mlflow_rows, run_cli, run_folder


def test_run_names_differ_under_the_same_seed_and_name_the_config():
    now = datetime(2026, 12, 7, 9, 1, 2)
    random.seed(0)
    first = run_name(["configs/debug/quickstart.yaml"], now=now)
    random.seed(0)
    second = run_name(["configs/debug/quickstart.yaml"], now=now)
    assert first != second and first.startswith("quickstart-1207-090102-")
    assert run_name(["a.yaml", "configs/ablate/no_em.yaml"], "test", now).startswith("test-no_em-1207-090102-")


def test_checkpoint_run_id_reads_the_run_folder():
    assert checkpoint_run_id("runs/1/abc123/checkpoints/best.ckpt") == "abc123"
    assert checkpoint_run_id("elsewhere/model.ckpt") is None and checkpoint_run_id(None) is None
    assert checkpoint_run_id("runs/cache/artifacts/9f3e/abc123/best/best.ckpt") == "abc123"  # a runs:/ download


def test_git_state_of_this_checkout_and_of_a_folder_outside_git(tmp_path):
    here = git_state()
    if here:  # a git checkout (CI's fresh clone is one)
        assert len(here["commit"]) == 40 and here["dirty"] in ("true", "false")
    assert git_state(tmp_path) == {}


def _tags(run_dir: Path, run_id: str) -> dict:
    return dict(mlflow_rows(run_dir, f"select key, value from tags where run_uuid = '{run_id}'"))


@pytest.mark.slow
def test_two_fits_with_one_seed_get_two_names_and_a_test_run_links_to_its_training_run(tmp_path):
    steps = ("--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--seed_everything", "0")
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):  # two stores, so each holds one training run
        assert run_cli(*fit_args(folder, *steps)) == 0
    names = [mlflow_rows(folder, "select name from runs")[0][0] for folder in (first, second)]
    assert names[0] != names[1] and all(n.startswith("quickstart-") for n in names)

    trained = run_folder(first)
    tags = _tags(first, trained.name)
    assert tags["ember.version"] and tags["ember.command"].startswith("ember fit --config")
    assert int(tags["ember.parameters"]) > 0 and tags["ember.trainer.max_steps"] == "2"
    assert ("ember.git_commit" in tags) == bool(git_state())
    description = tags["mlflow.note.content"]  # the run page's description
    assert description.startswith("fit of EmberModel (") and " on TextBytes, " in description
    assert f"`{tags['ember.command']}`" in description
    params = {k for (k,) in mlflow_rows(first, "select key from params")}
    assert "model.lr" in params and not {"lr", "_instantiator"} & params  # each setting once, under its section
    assert mlflow_rows(first, "select name from datasets") == [("TextBytes",)]
    kind = mlflow_rows(first, "select value from experiment_tags where key = 'mlflow.experimentKind'")
    assert kind == [("custom_model_development",)]

    assert run_cli("test", "--config", str(trained / "config.yaml"), "--ckpt_path",
                   str(trained / "checkpoints/last.ckpt")) == 0
    (test_id, test_name), = mlflow_rows(first, f"select run_uuid, name from runs where run_uuid != '{trained.name}'")
    assert test_name == f"test-{names[0]}"
    assert _tags(first, test_id)["mlflow.parentRunId"] == trained.name
    assert _tags(first, test_id)["ember.checkpoint"] == str(trained / "checkpoints/last.ckpt")
    assert _tags(first, test_id)["mlflow.note.content"].startswith("test of EmberModel (")


@pytest.mark.slow
def test_system_metrics_are_opt_in(tmp_path, monkeypatch):
    from ember import tracking

    monkeypatch.setattr(tracking, "SYSTEM_METRICS_EVERY_S", 0.2)
    steps = ("--trainer.max_steps", "4", "--trainer.val_check_interval", "2")
    assert run_cli(*fit_args(tmp_path / "on", *steps, "--trainer.logger.init_args.system_metrics", "true")) == 0
    assert run_cli(*fit_args(tmp_path / "off", *steps)) == 0
    system = "select count(*) from metrics where key like 'system/%'"
    assert mlflow_rows(tmp_path / "on", system)[0][0] > 0 and mlflow_rows(tmp_path / "off", system)[0][0] == 0


def test_a_remote_data_path_is_recorded_as_its_url():
    import json
    from types import SimpleNamespace

    from ember.provenance import dataset_input

    for url in ("http://127.0.0.1:9/shards", "pipe:cat shards/train-000000.tar"):
        data = dataset_input(SimpleNamespace(path=url), {"seq_len": 64}).dataset
        assert json.loads(data.source) == {"path": url} and data.source_type == "url"
