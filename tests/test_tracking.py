"""ember.tracking: the MLflow store (SQLite under the run folder), and runs started at once sharing it."""

import os
import re
import socket

import pytest

from ember import tracking
from ember.errors import EmberConfigError
from helpers import fit_args, free_port, run_cli


def test_default_is_a_sqlite_store_under_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    assert tracking.resolve_tracking_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"


def test_environment_variable_overrides_and_argument_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_tracking_uri(str(tmp_path)) == "http://127.0.0.1:5000"
    assert tracking.resolve_tracking_uri(str(tmp_path), "sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("uri", ["file:./mlruns", "./mlruns"])
def test_the_file_store_is_refused_with_the_fix(tmp_path, uri):
    with pytest.raises(EmberConfigError, match="sqlite:///"):
        tracking.resolve_tracking_uri(str(tmp_path), uri)


def _open_run(run_dir: str, barrier, queue):
    barrier.wait()  # every process opens the new store at once
    try:
        logger = tracking.EmberMLFlowLogger(run_dir=run_dir, log_model=False)
        queue.put(logger.experiment.get_run(logger.run_id).info.experiment_id)
    except Exception as err:  # reported to the test, which names it
        queue.put(f"{type(err).__name__}: {err}"[:300])


@pytest.mark.slow
def test_runs_started_at_once_share_a_new_store(tmp_path, monkeypatch):
    """Two `ember fit` started together in a fresh folder used to race to create mlflow.db: one died with
    'table experiments already exists' (or a duplicate experiment)."""
    import multiprocessing as mp

    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    ctx = mp.get_context("spawn")
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_run, args=(str(tmp_path), barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(set(results)) == 1 and results[0].isdigit(), results


def test_an_unreachable_tracking_server_is_refused_at_once_and_a_listening_one_passes():
    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(EmberConfigError, match=f"http://127.0.0.1:{port} does not answer"):
        tracking.check_reachable(f"http://127.0.0.1:{port}")  # at once, not after MLflow's minutes of retries
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        uri = f"http://127.0.0.1:{server.getsockname()[1]}"
        tracking.check_reachable(uri)


@pytest.mark.parametrize("broken", ["run_dir", "store"])
def test_an_unwritable_run_dir_or_sqlite_store_is_one_message_naming_it_and_the_fix(broken, tmp_path):
    blocker = tmp_path / "a-file"  # no folder can be made below a file, not even by root
    blocker.write_text("")
    run_dir, db = (blocker / "runs", tmp_path / "mlflow.db") if broken == "run_dir" else (tmp_path, blocker / "m.db")
    said = re.escape(str(blocker)) + ".* cannot be written .*: (set|make it).*writable"
    with pytest.raises(EmberConfigError, match=said):
        tracking.check_writable_store(str(run_dir), f"sqlite:///{db}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only files")
def test_a_read_only_sqlite_store_is_refused(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_text("")
    db.chmod(0o444)
    with pytest.raises(EmberConfigError, match="is read-only: make it writable"):
        tracking.check_writable_store(str(tmp_path), f"sqlite:///{db}")


@pytest.mark.slow
def test_fit_refuses_an_unwritable_store_before_training_with_exit_2(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", f"sqlite:///{blocker}/dir/mlflow.db")  # $MLFLOW_TRACKING_URI
    assert run_cli(*fit_args(tmp_path / "runs")) == 2
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error:")]
    assert len(errors) == 1 and f"the MLflow store sqlite:///{blocker}/dir/mlflow.db" in errors[0]
    assert "Traceback" not in caplog.text and not list(tmp_path.rglob("*.ckpt"))


def test_the_browse_hint_is_commands_that_work_as_printed(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    hint = tracking.EmberMLFlowLogger(run_dir=str(tmp_path)).ui_command()
    assert f"make ui RUNS={tmp_path}" in hint  # the Makefile serves sqlite:///$(RUNS)/mlflow.db from .venv-ui
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in hint


@pytest.mark.slow
def test_continue_run_takes_the_run_whose_folder_holds_the_checkpoint_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    first = tracking.EmberMLFlowLogger(run_dir=str(tmp_path), log_model=False)
    run = first.run_path  # starts the run
    again = tracking.EmberMLFlowLogger(run_dir=str(tmp_path), log_model=False)
    assert again.continue_run(run / "checkpoints/last.ckpt") == run and again.run_path == run
    for elsewhere in (tmp_path / "last.ckpt", run.parent / "f00d/checkpoints/last.ckpt", "/last.ckpt"):
        assert tracking.EmberMLFlowLogger(run_dir=str(tmp_path), log_model=False).continue_run(elsewhere) is None


@pytest.mark.slow  # the local store's tables are created: over a second
def test_offline_fallback_logs_to_the_local_store_with_one_warning_naming_both(tmp_path, caplog):
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EmberConfigError, match=f"{uri} does not answer"):
        tracking.EmberMLFlowLogger(run_dir=str(tmp_path), tracking_uri=uri)
    logger = tracking.EmberMLFlowLogger(run_dir=str(tmp_path), tracking_uri=uri, offline_fallback=True)
    local = f"sqlite:///{tmp_path}/mlflow.db"
    assert logger._tracking_uri == local
    (said,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert uri in said and local in said

