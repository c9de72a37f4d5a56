"""ember.tracking: the MLflow store (SQLite under the run folder), and runs started at once sharing it."""

import socket

import pytest

from ember import tracking
from ember.errors import EmberConfigError


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
