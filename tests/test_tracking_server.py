"""ember.tracking_server, and EmberMLFlowLogger against a real MLflow tracking server (.venv-ui's, `make ui-env`;
those tests skip without it): a fit's params, metrics, config, plots and checkpoints arrive through the server, an
evaluation becomes its child run, and a server that is down at the start, or dies during a fit, is one message (or,
by choice, a local store) and never a hang of minutes.
"""

import os
import re
import socket
import time
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from requests.exceptions import ConnectionError as RequestsConnectionError

from ember import tracking, tracking_server
from ember.callbacks.checkpoint import EmberCheckpoint
from helpers import fit_args, free_port, mlflow_rows, mlflow_server, needs_mlflow_server, run_cli, run_folder

STEPS = ("--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.log_every_n_steps", "2",
         "--trainer.enable_progress_bar", "false")


@pytest.fixture(autouse=True)
def _http_settings_restored(monkeypatch):
    """A server run sets MLflow's HTTP retry variables (SERVER_HTTP_DEFAULTS): unset again after each test."""
    for name in tracking_server.SERVER_HTTP_DEFAULTS:
        monkeypatch.setenv(name, "")  # recorded as unset, so removed again after the test
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module: it takes seconds to start."""
    needs_mlflow_server()
    folder = tmp_path_factory.mktemp("server")
    with mlflow_server(folder) as uri:
        yield SimpleNamespace(uri=uri, folder=folder)


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    """A debug fit logged to the server, and the server's runs right after it."""
    import mlflow

    run_dir = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        for name in tracking_server.SERVER_HTTP_DEFAULTS:
            patch.setenv(name, "")
            patch.delenv(name)
        assert run_cli(*fit_args(run_dir, *STEPS, "--trainer.logger.init_args.tracking_uri", server.uri)) == 0
    client = mlflow.MlflowClient(server.uri)
    runs = client.search_runs([client.get_experiment_by_name("ember").experiment_id])
    return SimpleNamespace(client=client, runs=runs, folder=run_folder(run_dir))


class _GoneServer:
    """An MlflowClient whose server went away: MLflow's error after its retries, wrapping the requests error."""

    calls = 0

    def get_experiment_by_name(self, name):
        self.calls += 1
        try:
            raise RequestsConnectionError("HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded (Caused "
                                          "by NewConnectionError('x: Failed to establish a new connection: [Errno 111] "
                                          "Connection refused'))")
        except RequestsConnectionError as err:
            # MLflow's wrapping: the requests error is the context, not the cause
            raise MlflowException(f"API request to http://127.0.0.1:1/x failed with exception {err}") from None


def test_a_server_that_stops_answering_is_one_error_and_no_more_calls_and_retries_are_seconds(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")  # the user's setting
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        logger = tracking.EmberMLFlowLogger(run_dir=str(tmp_path), tracking_uri=uri)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3" and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
    gone = logger._mlflow_client._client = _GoneServer()
    said = re.escape(f"{uri} stopped answering ([Errno 111] Connection refused) before the run started")
    with pytest.raises(tracking_server.TrackingServerLost, match=said):
        _ = logger.experiment  # the first call: the experiment's lookup
    with pytest.raises(tracking_server.TrackingServerLost, match=said):  # at once, without trying the server again
        logger._mlflow_client.get_experiment_by_name("ember")
    assert gone.calls == 1
    assert tracking_server.connection_failure(MlflowException("RESOURCE_DOES_NOT_EXIST")) is None  # other errors pass


@pytest.mark.slow
def test_a_fit_logs_params_metrics_config_plots_and_checkpoints_to_the_server(trained, server):
    (run,) = trained.runs  # exactly one run
    client, run_id = trained.client, run.info.run_id
    assert run.info.status == "FINISHED" and run_id == trained.folder.name
    assert run.data.params["model.lr"] == "0.003" and run.data.tags["ember.command"].startswith("ember fit")
    for metric in ("train/loss", "val/bpb"):
        assert client.get_metric_history(run_id, metric), metric
    # uploaded through the server (proxied artifacts), not written by the client into its own folder
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    listed = {a.path for top in client.list_artifacts(run_id) for a in
              ([top] if not top.is_dir else client.list_artifacts(run_id, top.path))}
    assert {"config.yaml", "plots/learning_curves.png", "best/best.ckpt", "last/last.ckpt"} <= listed, listed
    (stored,) = (server.folder / "artifacts").rglob(f"{run_id}/artifacts/best/best.ckpt")
    assert stored.read_bytes() == (trained.folder / "checkpoints" / "best.ckpt").read_bytes()
    config = client.download_artifacts(run_id, "config.yaml", str(server.folder))
    assert f"tracking_uri: {server.uri}" in open(config).read()


@pytest.mark.slow
def test_an_evaluation_of_the_runs_checkpoint_becomes_its_child_run_on_the_server(trained):
    client, parent = trained.client, trained.runs[0].info
    assert run_cli("test", "--config", str(trained.folder / "config.yaml"), "--ckpt_path",
                   str(trained.folder / "checkpoints" / "best.ckpt"), "--trainer.enable_progress_bar", "false") == 0
    (child,) = client.search_runs([parent.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert child.info.status == "FINISHED" and child.info.run_name == f"test-{parent.run_name}"
    assert client.get_metric_history(child.info.run_id, "test/bpb")


@pytest.mark.slow
def test_a_server_that_is_down_is_one_message_at_once_and_leaves_nothing(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    assert run_cli(*fit_args(tmp_path, *STEPS, "--trainer.logger.init_args.tracking_uri", uri)) == 2
    assert time.monotonic() - start < 10
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error:")]
    assert len(errors) == 1 and f"the MLflow tracking server {uri} does not answer" in errors[0], errors
    assert "Traceback" not in caplog.text
    assert not (tmp_path / "mlflow.db").exists() and not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_offline_fallback_logs_to_the_local_store_when_the_server_is_down(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    assert run_cli(*fit_args(tmp_path, *STEPS, "--trainer.logger.init_args.tracking_uri", uri,
                             "--trainer.logger.init_args.offline_fallback", "true")) == 0
    local = f"sqlite:///{tmp_path}/mlflow.db"
    said = [r.getMessage() for r in caplog.records if uri in r.getMessage()]
    assert len(said) == 1 and local in said[0] and "offline_fallback" in said[0], said
    assert mlflow_rows(tmp_path, "select status from runs") == [("FINISHED",)]
    assert (run_folder(tmp_path) / "checkpoints" / "best.ckpt").exists()


@pytest.mark.slow
def test_a_server_that_dies_mid_fit_ends_it_with_one_message_that_resumes_once_it_is_back(tmp_path, monkeypatch,
                                                                                           caplog):
    """Killed after the first validation: MLflow's client used to retry each call for minutes (about 8 here) and
    the error named a file operation. Now the fit stops within seconds with one message whose command resumes it."""
    import mlflow

    server = mlflow_server(tmp_path / "server")
    killed = []
    on_validation_end = EmberCheckpoint.on_validation_end

    def kill_after_first_validation(self, trainer, pl_module):
        on_validation_end(self, trainer, pl_module)  # last.ckpt of this step saved
        if not trainer.sanity_checking and not killed:
            server.stop(kill=True)
            killed.append(time.monotonic())

    with server as uri:
        monkeypatch.setattr(EmberCheckpoint, "on_validation_end", kill_after_first_validation)
        steps = ("--trainer.max_steps", "40", *STEPS[2:])
        assert run_cli(*fit_args(tmp_path / "runs", *steps, "--trainer.logger.init_args.tracking_uri", uri)) == 2
        assert killed and time.monotonic() - killed[0] < 60  # seconds (3 retries), not MLflow's default minutes
        errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error:")]
        assert len(errors) == 1 and f"the MLflow tracking server {uri} stopped answering" in errors[0], errors
        assert "Traceback" not in caplog.text
        folder = run_folder(tmp_path / "runs")
        resume = f"ember fit --config {folder / 'config.yaml'} --ckpt_path {folder / 'checkpoints' / 'last.ckpt'}"
        assert errors[0].endswith(resume)

    monkeypatch.setattr(EmberCheckpoint, "on_validation_end", on_validation_end)
    with server:  # back on the same port and store: the printed command continues the run
        client = mlflow.MlflowClient(uri)
        logged = max(m.step for m in client.get_metric_history(folder.name, "train/loss"))
        assert run_cli(*resume.split()[1:], "--trainer.max_steps", "6", "--trainer.enable_progress_bar", "false") == 0
        assert client.get_run(folder.name).info.status == "FINISHED"
        assert max(m.step for m in client.get_metric_history(folder.name, "train/loss")) > logged
