"""MLflow glue: an explicit tracking URI, checkpoints under the run directory, config as an artifact."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

from ember.errors import EmberConfigError
from ember.files import atomic_write_text

log = logging.getLogger(__name__)
# Read once: mlflow.set_tracking_uri() writes this variable, so a later run in the same process
# would otherwise inherit the previous run's store instead of its own run_dir.
ENV_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resolve_tracking_uri(run_dir: str, tracking_uri: Optional[str] = None) -> str:
    """tracking_uri, else $MLFLOW_TRACKING_URI, else a sqlite store at <run_dir>/mlflow.db."""
    uri = tracking_uri or ENV_TRACKING_URI or f"sqlite:///{Path(run_dir).resolve()}/mlflow.db"
    if uri.startswith("file:") or "://" not in uri:
        raise EmberConfigError(f"MLflow tracking URI {uri!r} is a file store, which current MLflow refuses: use "
                               "sqlite:///path/to/mlflow.db, or http://host:port for a server")
    return uri


def check_reachable(uri: str, timeout: float = 5.0):
    """A tracking server must answer a connection within `timeout` seconds: MLflow's client retries for minutes
    before its first error, so an unreachable server would look like a hang."""
    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise EmberConfigError(f"the MLflow tracking server {uri} does not answer ({err}): start it (mlflow server "
                               "--port ...), fix $MLFLOW_TRACKING_URI or trainer.logger.init_args.tracking_uri, or "
                               "unset it to log to a local sqlite store under runs/") from err


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on `<db>.lock` beside a sqlite store (nothing for a server URI).

    MLflow creates and migrates a new sqlite store's tables, and then the experiment, without locking, so
    runs started at once in a fresh folder fail ('table experiments already exists')."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl  # deferred: POSIX only; elsewhere runs start one at a time
    except ImportError:  # not POSIX: start runs one at a time there
        yield
        return
    lock = Path(uri[len("sqlite:///"):] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmberMLFlowLogger(MLFlowLogger):
    """MLflow logger with an explicit tracking URI (a local sqlite store unless told otherwise).

    Checkpoints and the resolved config.yaml are written under
    `<run_dir>/<experiment_id>/<run_id>/` and logged to the run as artifacts.

    Args:
        experiment_name: MLflow experiment.
        run_name: MLflow run name (MLflow picks one when null).
        run_dir: local folder for the sqlite store, artifacts and checkpoints.
        tracking_uri: explicit URI; default $MLFLOW_TRACKING_URI, else sqlite:///<run_dir>/mlflow.db.
        log_model: log checkpoints as artifacts: true (at the end), "all" (each save) or false.
        tags: extra run tags.
    """

    def __init__(self, experiment_name: str = "ember", run_name: Optional[str] = None, run_dir: str = "runs",
                 tracking_uri: Optional[str] = None, log_model: bool | str = True,
                 tags: Optional[dict[str, Any]] = None):
        self._run_dir = str(Path(run_dir).resolve())
        Path(self._run_dir).mkdir(parents=True, exist_ok=True)
        uri = resolve_tracking_uri(run_dir, tracking_uri)
        if uri.startswith(("http://", "https://")):
            check_reachable(uri)
        with store_lock(uri):  # the client creates a new store's tables
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri, tags=tags,
                             log_model=log_model, artifact_location=Path(self._run_dir, "artifacts").as_uri())

    @property
    def experiment(self):
        """The MLflow client; the first access creates the experiment (if new) and the run, under the lock."""
        if self._initialized:
            return self._mlflow_client
        with store_lock(self._tracking_uri):
            return MLFlowLogger.experiment.fget(self)

    @property
    def save_dir(self) -> str:
        """Local root of checkpoints: <run_dir>/<experiment_id>/<run_id>/checkpoints."""
        return self._run_dir

    @property
    def run_path(self) -> Path:
        return Path(self._run_dir, str(self.experiment_id), str(self.run_id))

    def ui_command(self) -> str:
        uri = self._tracking_uri
        return f"mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else f"open {uri}"


class MLflowSaveConfig(SaveConfigCallback):
    """Saves the resolved config as `config.yaml` in the run folder and as an MLflow artifact.

    The stock callback asserts on a log_dir, which an sqlite tracking URI does not have.
    """

    def __init__(self, *args, **kwargs):
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, EmberMLFlowLogger):
                atomic_write_text(logger.run_path / "config.yaml", text)
                logger.experiment.log_text(logger.run_id, text, "config.yaml")
                logger.log_hyperparams(flat_hyperparams(self.config))
            elif isinstance(logger, MLFlowLogger):
                logger.experiment.log_text(logger.run_id, text, "config.yaml")


def flat_hyperparams(config) -> dict[str, Any]:
    """Scalar model/data settings as flat MLflow params (model.backbone.d_model: 256, ...)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value):
        if hasattr(value, "items"):
            for k, v in value.items():
                k = str(k)
                if k == "init_args":
                    walk(prefix, v)
                else:
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            out[prefix.replace("class_path", "class")] = value

    for section in ("model", "data", "seed_everything"):
        if section in config:
            walk(section, config[section].as_dict() if hasattr(config[section], "as_dict") else config[section])
    return out


def save_figure(trainer, fig, filename: str) -> Path:
    """Save a matplotlib figure in the run folder and log it to the MLflow run under `plots/`."""
    folder = Path(trainer.default_root_dir)
    loggers = [lg for lg in trainer.loggers if isinstance(lg, EmberMLFlowLogger)]
    for logger in loggers:
        folder = logger.run_path
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    for logger in loggers:
        logger.experiment.log_artifact(logger.run_id, str(path), "plots")
    return path
