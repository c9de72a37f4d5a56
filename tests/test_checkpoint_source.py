"""init_from and --ckpt_path take a checkpoint file, a run folder or a runs:/ URI (ember.checkpoint_source): the
resolver on its own against a small MLflow store (no training), then `ember fit`/`validate` from a trained run."""

import logging
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow.artifacts
import pytest
import torch
from mlflow import MlflowClient

from ember import tracking
from ember.checkpoint_source import artifact_store, resolve_checkpoint
from ember.cli.runs import build_cli
from ember.errors import EmberConfigError
from helpers import DEBUG, fit_args, mlflow_rows, run_cli, run_folder


def no_store():
    raise AssertionError("a local source must not open the tracking store")


def save(path: Path, value: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.full((3,), value)}}, path)
    return path


def weight(path: Path) -> float:
    return torch.load(path, weights_only=True)["state_dict"]["w"][0].item()


def cache_files(cache: Path) -> list[str]:
    """Every file and folder under the cache but the stamps of whole downloads."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if not p.name.endswith(".stamp")
                  and not p.is_dir()) + sorted(p.name for p in cache.rglob(".*.part"))


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """The artifact paths mlflow.artifacts.download_artifacts is asked for."""
    calls, real = [], mlflow.artifacts.download_artifacts
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts",
                        lambda **kw: calls.append(kw["artifact_path"]) or real(**kw))
    return calls


# ---- local sources: no store --------------------------------------------------------------------------------------
def test_a_file_is_taken_as_it_is_and_a_run_folder_gives_best_to_init_and_last_to_resume(tmp_path, caplog):
    run = tmp_path / "runs/1/abc"
    best, last = save(run / "checkpoints/best.ckpt", 1.0), save(run / "checkpoints/last.ckpt", 2.0)
    assert resolve_checkpoint(str(last), "init", no_store) == last
    assert resolve_checkpoint(str(tmp_path / "missing.ckpt"), "init", no_store) == tmp_path / "missing.ckpt"
    with caplog.at_level(logging.INFO, logger="ember.checkpoint_source"):
        assert resolve_checkpoint(str(run), "init", no_store) == best
        assert resolve_checkpoint(str(run), "resume", no_store) == last
        assert resolve_checkpoint(str(run / "checkpoints"), "resume", no_store) == last  # its checkpoints folder
    assert f"init_from {run}: took {best}" in caplog.text and f"--ckpt_path {run}: took {last}" in caplog.text


@pytest.mark.parametrize("source, message", [
    ("empty", "init_from {folder}: no checkpoints in {folder}: give a run folder"),
    ("last only", "init_from {folder}: no best.ckpt in {folder}/checkpoints (it holds last.ckpt): give the file you "
                  "want, e.g. {folder}/checkpoints/last.ckpt"),
    ("s3://bucket/best.ckpt", "init_from s3://bucket/best.ckpt: Ember does not read s3: URIs: give a checkpoint file, "
                              "a run folder (<run_dir>/<experiment_id>/<run_id>) or an MLflow run's checkpoint"),
    ("models:/ember/1", "init_from models:/ember/1: registered models (models:/) are not used by Ember"),
    ("runs:/", "init_from runs:/ is not a run's artifact URI: write runs:/<run_id>"),
    ("runs:/abc/../../etc/passwd", "is not a run's artifact URI"),
])
def test_a_bad_local_source_or_scheme_is_one_message_naming_the_fix(source, message, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    if source == "last only":
        save(folder / "checkpoints/last.ckpt", 2.0)
    given = str(folder) if source in ("empty", "last only") else source
    with pytest.raises(EmberConfigError) as err:
        resolve_checkpoint(given, "init", no_store)
    assert message.format(folder=folder) in str(err.value)


def test_a_tracking_server_that_is_down_or_a_store_that_is_not_there_is_one_message(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = lambda: (f"http://127.0.0.1:{port}", tmp_path / "cache")  # noqa: E731
    with pytest.raises(EmberConfigError, match=rf"--ckpt_path runs:/abc: the MLflow tracking server "
                                               rf"http://127.0.0.1:{port} does not answer .*: start it"):
        resolve_checkpoint("runs:/abc", "resume", down)
    missing = lambda: artifact_store(tmp_path / "elsewhere")  # noqa: E731
    with pytest.raises(EmberConfigError, match="there is no MLflow store at sqlite:///.*elsewhere/mlflow.db, so no "
                                               "run to take it from: point trainer.logger.init_args.run_dir"):
        resolve_checkpoint("runs:/abc", "init", missing)
    assert list(tmp_path.iterdir()) == []  # no store created, no cache


# ---- runs:/ URIs against a store with finished runs (no training; the store takes ~2 s once per module) -----------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sqlite MLflow store (MLflow's client, as the Ember logger writes it) with runs made by `new_run`."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("ember", artifact_location=(root / "artifacts").as_uri())
    return SimpleNamespace(root=root, uri=uri, client=client, experiment=experiment)


def new_run(store, **checkpoints: float) -> str:
    """A finished run that logged <name>/<name>.ckpt (w filled with the value) for each name given."""
    run_id = store.client.create_run(store.experiment).info.run_id
    log_checkpoints(store, run_id, **checkpoints)
    return run_id


def log_checkpoints(store, run_id: str, **checkpoints: float):
    for name, value in checkpoints.items():
        file = save(store.root / "logged" / run_id / name / f"{name}.ckpt", value)
        store.client.log_artifact(run_id, str(file), name)
    time.sleep(0.01)  # the run's end time (ms) moves on
    store.client.set_terminated(run_id)


def test_a_runs_uri_is_downloaded_once_and_the_next_call_takes_the_cache(store, downloads, tmp_path, caplog):
    run_id = new_run(store, best=1.0, last=2.0)
    cache = tmp_path / "cache"
    at = lambda: (store.uri, cache)  # noqa: E731
    with caplog.at_level(logging.INFO, logger="ember.checkpoint_source"):
        best = resolve_checkpoint(f"runs:/{run_id}", "init", at)
        last = resolve_checkpoint(f"runs:/{run_id}", "resume", at)
        assert resolve_checkpoint(f"runs:/{run_id}/best/best.ckpt", "init", at) == best
        assert resolve_checkpoint(f"runs:/{run_id}/last/last.ckpt", "resume", at) == last
    assert downloads == ["best/best.ckpt", "last/last.ckpt"]  # the second call of each: the cache
    assert (weight(best), weight(last)) == (1.0, 2.0) and best.parent.parent.name == run_id
    assert cache_files(cache) == sorted(str(p.relative_to(cache)) for p in (best, last))  # no part left
    assert f"init_from runs:/{run_id}: downloaded to {best}" in caplog.text
    assert f"--ckpt_path runs:/{run_id}/last/last.ckpt: took {last} (downloaded before)" in caplog.text


def test_a_run_that_changed_since_the_download_is_downloaded_again(store, downloads, tmp_path):
    run_id = new_run(store, last=2.0)
    at = lambda: (store.uri, tmp_path / "cache")  # noqa: E731
    assert weight(resolve_checkpoint(f"runs:/{run_id}", "resume", at)) == 2.0
    store.client.update_run(run_id, status="RUNNING")  # resumed: a running run may log its checkpoints again
    assert weight(resolve_checkpoint(f"runs:/{run_id}", "resume", at)) == 2.0
    log_checkpoints(store, run_id, last=3.0)  # the resumed fit ends and logs its last.ckpt
    assert weight(resolve_checkpoint(f"runs:/{run_id}", "resume", at)) == 3.0
    assert weight(resolve_checkpoint(f"runs:/{run_id}", "resume", at)) == 3.0
    assert downloads == ["last/last.ckpt"] * 3


def test_an_interrupted_download_leaves_nothing_that_looks_complete(store, monkeypatch, tmp_path):
    run_id = new_run(store, best=1.0)
    cache = tmp_path / "cache"
    real = mlflow.artifacts.download_artifacts

    def cut_off(**kw):
        half = Path(kw["dst_path"], kw["artifact_path"])
        half.parent.mkdir(parents=True)
        half.write_bytes(b"PK\x03\x04 the first bytes")
        raise OSError("Connection reset by peer")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", cut_off)
    with pytest.raises(EmberConfigError, match=rf"init_from runs:/{run_id}: the download into .* failed \(Connection "
                                               "reset by peer\\): nothing was kept"):
        resolve_checkpoint(f"runs:/{run_id}", "init", lambda: (store.uri, cache))
    assert cache_files(cache) == []
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", real)
    assert weight(resolve_checkpoint(f"runs:/{run_id}", "init", lambda: (store.uri, cache))) == 1.0


@pytest.mark.parametrize("case", ["no such run", "no such artifact", "no checkpoints logged"])
def test_a_bad_runs_uri_is_one_message_naming_the_fix_and_writes_nothing(case, store, tmp_path):
    run_id = new_run(store, best=1.0, last=2.0) if case != "no checkpoints logged" else new_run(store)
    source, message = {
        "no such run": ("runs:/0123456789abcdef", f"init_from runs:/0123456789abcdef: the MLflow store {store.uri} "
                                                  "has no run 0123456789abcdef: check the id"),
        "no such artifact": (f"runs:/{run_id}/checkpoints/best.ckpt",
                             f"run {run_id} has no artifact checkpoints/best.ckpt; its checkpoints: runs:/{run_id}/"
                             f"best/best.ckpt, runs:/{run_id}/last/last.ckpt"),
        "no checkpoints logged": (f"runs:/{run_id}", f"run {run_id} logged no checkpoints to MLflow (they are logged "
                                                     "when a fit ends, unless trainer.logger.init_args.log_model is "
                                                     f"false): give its run folder <run_dir>/{store.experiment}/"
                                                     f"{run_id} instead"),
    }[case]
    with pytest.raises(EmberConfigError) as err:
        resolve_checkpoint(source, "init", lambda: (store.uri, tmp_path / "cache"))
    assert message in str(err.value)
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_continue_run_takes_the_run_a_runs_uri_names(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    run = tracking.EmberMLFlowLogger(run_dir=str(tmp_path), log_model=False).run_path  # starts the run
    cached = tmp_path / "cache/artifacts/x" / run.name / "last/last.ckpt"  # not in the run's folder
    again = tracking.EmberMLFlowLogger(run_dir=str(tmp_path), log_model=False)
    assert again.continue_run(cached, run.name) == run and again.run_path == run
    assert tracking.EmberMLFlowLogger(run_dir=str(tmp_path), log_model=False).continue_run(cached, "f00d") is None


# ---- from a trained run: ember fit / validate -----------------------------------------------------------------------
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1")


def fit_two_steps(run_dir: Path) -> Path:
    """A debug fit of 2 steps, validated at step 2 (best.ckpt and last.ckpt, both logged to MLflow): its folder."""
    assert run_cli(*fit_args(run_dir, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", *QUIET)) == 0
    return run_folder(run_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return fit_two_steps(tmp_path_factory.mktemp("trained") / "runs")


@pytest.mark.slow
def test_init_from_a_run_folder_or_a_runs_uri_copies_the_weights_of_the_best_checkpoint(trained, downloads):
    best = torch.load(trained / "checkpoints/best.ckpt", weights_only=True)["state_dict"]
    run_dir = trained.parents[1]
    cached = lambda: list((run_dir / "cache/artifacts").glob(f"*/{trained.name}/best/best.ckpt"))  # noqa: E731
    fresh = not cached()  # another test of the module may have downloaded it
    for source in (trained / "checkpoints/best.ckpt", trained, f"runs:/{trained.name}",
                   f"runs:/{trained.name}/best/best.ckpt"):
        cli = build_cli(DEBUG, ["--trainer.default_root_dir", str(run_dir), "--model.init_args.init_from",
                                str(source)])  # no logger: the store and cache of default_root_dir
        cli.model.trainer = cli.trainer
        cli.model.setup("fit")
        copied = cli.model.state_dict()
        assert copied.keys() == best.keys(), source
        for name, value in best.items():
            torch.testing.assert_close(copied[name], value, rtol=0, atol=0, msg=f"{source}: {name}")
    assert downloads == ["best/best.ckpt"] * fresh  # runs:/<id> is runs:/<id>/best/best.ckpt, cached the 2nd time
    assert cached()


@pytest.mark.slow
def test_validate_with_init_from_a_runs_uri_scores_the_runs_best_weights(trained, caplog):
    run_dir = trained.parents[1]
    assert run_cli("validate", "--config", str(trained / "config.yaml"), "--model.init_args.init_from",
                   f"runs:/{trained.name}", *QUIET) == 0
    assert f"model.init_from runs:/{trained.name}: " in caplog.text
    (first, _), (again, _) = mlflow_rows(run_dir, "select value, run_uuid from metrics where key='val/loss' "
                                                  f"order by run_uuid = '{trained.name}' desc")
    assert again == pytest.approx(first, abs=1e-6)  # the fit's validation at step 2 (best.ckpt) and this one


@pytest.mark.slow
def test_bad_sources_on_the_command_line_are_one_message_and_exit_2(trained, caplog):
    run_dir = trained.parents[1]
    assert run_cli(*fit_args(run_dir, "--ckpt_path", "runs:/0123456789abcdef")) == 2
    assert caplog.text.count("has no run 0123456789abcdef") == 1 and "Traceback" not in caplog.text
    caplog.clear()
    assert run_cli("validate", "--config", str(trained / "config.yaml"), "--ckpt_path", f"runs:/{trained.name}/x",
                   *QUIET) == 2
    assert caplog.text.count(f"--ckpt_path runs:/{trained.name}/x: run {trained.name} has no artifact x; its "
                             f"checkpoints: runs:/{trained.name}/best/best.ckpt, runs:/{trained.name}/last/"
                             "last.ckpt") == 1 and "Traceback" not in caplog.text


@pytest.mark.slow
def test_fit_resumes_from_a_runs_uri_or_a_run_folder_at_its_step_in_the_same_run(tmp_path, caplog):
    run_dir = tmp_path / "runs"
    folder = fit_two_steps(run_dir)
    resume = ("fit", "--config", str(folder / "config.yaml"), *QUIET, "--trainer.val_check_interval", "2")
    caplog.clear()
    assert run_cli(*resume, "--ckpt_path", f"runs:/{folder.name}/last/last.ckpt", "--trainer.max_steps", "4") == 0
    assert f"--ckpt_path runs:/{folder.name}/last/last.ckpt: downloaded to {run_dir}/cache/artifacts/" in caplog.text
    assert f"resuming run {folder}" in caplog.text
    assert run_cli(*resume, "--ckpt_path", str(folder), "--trainer.max_steps", "6") == 0
    assert f"--ckpt_path {folder}: took {folder}/checkpoints/last.ckpt" in caplog.text

    assert mlflow_rows(run_dir, "select run_uuid, status from runs") == [(folder.name, "FINISHED")]  # the same run
    steps = [s for (s,) in mlflow_rows(run_dir, "select step from metrics where key='train/loss' order by step")]
    assert steps == list(range(6))  # 0-1, then from step 2 on, then from 4 on: no step twice, none missing
    assert torch.load(folder / "checkpoints/last.ckpt", weights_only=False)["global_step"] == 6


@pytest.mark.slow
def test_an_evaluation_of_a_runs_uri_is_a_child_of_that_run(trained):
    run_dir = trained.parents[1]
    assert run_cli("test", "--config", str(trained / "config.yaml"), "--ckpt_path", f"runs:/{trained.name}",
                   *QUIET) == 0
    parents = mlflow_rows(run_dir, "select r.name, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
                                   "where t.key = 'mlflow.parentRunId' and r.name like 'test-%'")
    assert parents and all(parent == trained.name for _, parent in parents)
