"""MLflow glue: an explicit tracking URI, checkpoints under the run directory, config as an artifact."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning_utilities.core.imports import RequirementCache
from mlflow.exceptions import MlflowException

from ember.errors import EmberConfigError
from ember.files import atomic_write_text
from ember.provenance import checkpoint_run_id, dataset_input, provenance_tags, run_description, run_name
from ember.tracking_server import ServerClient, TrackingServerLost, server_lost, use_server_http_defaults

log = logging.getLogger(__name__)
PSUTIL = RequirementCache("psutil>=5.9")  # the optional system-metrics dependency
SYSTEM_METRICS_EVERY_S = 10.0
# Read once: mlflow.set_tracking_uri() writes this variable, so a later run in the same process
# would otherwise inherit the previous run's store instead of its own run_dir.
ENV_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def resolve_tracking_uri(run_dir: str, tracking_uri: Optional[str] = None) -> str:
    """tracking_uri, else $MLFLOW_TRACKING_URI, else a sqlite store at <run_dir>/mlflow.db."""
    uri = tracking_uri or ENV_TRACKING_URI or local_store_uri(run_dir)
    if uri.startswith("file:") or "://" not in uri:
        raise EmberConfigError(f"MLflow tracking URI {uri!r} is a file store, which current MLflow refuses: use "
                               "sqlite:///path/to/mlflow.db, or http://host:port for a server")
    return uri


def local_store_uri(run_dir: str) -> str:
    """The sqlite store of a run folder: sqlite:///<run_dir>/mlflow.db."""
    return f"sqlite:///{Path(run_dir).resolve()}/mlflow.db"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


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
                               "unset it to log to a local sqlite store under runs/ (or set trainer.logger.init_args."
                               "offline_fallback true to do so whenever the server is down)") from err


def reach_or_fall_back(uri: str, run_dir: str, offline_fallback: bool) -> str:
    """The server `uri` when it answers; when it does not, check_reachable's error, or with `offline_fallback` the
    local sqlite store under run_dir, with one warning that names both."""
    try:
        check_reachable(uri)
        return uri
    except EmberConfigError as err:
        if not offline_fallback:
            raise
        local = local_store_uri(run_dir)
        log.warning("the MLflow tracking server %s does not answer (%s): this run logs to the local store %s instead "
                    "(offline_fallback: true)", uri, err.__cause__, local)
        return local


def check_writable_store(run_dir: str, uri: str):
    """The run folder, and a sqlite store's folder and file, must be writable: otherwise MLflow or the first
    checkpoint fails with a traceback after the model and the data are built (or after hours of training)."""
    writable_folder(Path(run_dir), f"run_dir {run_dir}", "set trainer.logger.init_args.run_dir to a writable folder")
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        fix = ("make it writable, or give a writable sqlite:///path/to/mlflow.db as $MLFLOW_TRACKING_URI or "
               "trainer.logger.init_args.tracking_uri (unset, the store is <run_dir>/mlflow.db)")
        writable_folder(db.parent, f"the MLflow store {uri}", fix)
        if db.exists() and not os.access(db, os.W_OK):
            raise EmberConfigError(f"the MLflow store {uri} is read-only: {fix}")


def writable_folder(folder: Path, what: str, fix: str):
    """Create `folder` if missing and write a temporary file in it; one message naming `what` and `fix` if not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise EmberConfigError(f"{what}: {folder} cannot be written ({err.strerror or err}): {fix}") from None


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
    `<run_dir>/<experiment_id>/<run_id>/` and logged to the run as artifacts (with a tracking server, uploaded to the
    server's artifact store unless the experiment names another). A server must answer when the run starts; one that
    stops answering later ends the command with one message that says how to resume, within seconds
    (ember/tracking_server.py).

    Args:
        experiment_name: MLflow experiment.
        run_name: MLflow run name (MLflow picks one when null).
        run_dir: local folder for the sqlite store, artifacts and checkpoints; default (null) the trainer's
            `default_root_dir` under `ember` commands (itself `runs` unless set), `runs` otherwise.
        tracking_uri: explicit URI; default $MLFLOW_TRACKING_URI, else sqlite:///<run_dir>/mlflow.db.
        log_model: log checkpoints as artifacts: true (at the end), "all" (each save) or false.
        tags: extra run tags.
        system_metrics: also log CPU, memory, disk, network (and GPU) use every 10 s as `system/*` metrics (MLflow's
            monitor; needs psutil: pip install 'ember[system-metrics]').
        offline_fallback: when the tracking server does not answer at the start, log this run to the local sqlite
            store <run_dir>/mlflow.db instead (with a warning naming both) rather than stop with an error.
    """

    _continued = False  # continue_run() found the run

    def __init__(self, experiment_name: str = "ember", run_name: Optional[str] = None, run_dir: Optional[str] = None,
                 tracking_uri: Optional[str] = None, log_model: bool | str = True,
                 tags: Optional[dict[str, Any]] = None, system_metrics: bool = False,
                 offline_fallback: bool = False):
        if system_metrics and not PSUTIL:
            raise EmberConfigError(f"system_metrics: true needs psutil ({PSUTIL.message}): pip install "
                                   "'ember[system-metrics]', or set trainer.logger.init_args.system_metrics false")
        self._system_metrics, self._monitor = system_metrics, None
        run_dir = "runs" if run_dir is None else run_dir
        self._run_dir = str(Path(run_dir).resolve())
        uri = resolve_tracking_uri(run_dir, tracking_uri)
        if is_server(uri):
            uri = reach_or_fall_back(uri, self._run_dir, offline_fallback)
        server = is_server(uri)  # still, unless offline_fallback took the local store
        check_writable_store(self._run_dir, uri)
        # a new experiment's artifacts: under run_dir for a local store, the server's own store (mlflow-artifacts:/,
        # uploaded through it) for a server, whose other clients could not read this machine's folder
        artifacts = None if server else Path(self._run_dir, "artifacts").as_uri()
        with store_lock(uri):  # the client creates a new store's tables
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri, tags=tags,
                             log_model=log_model, artifact_location=artifacts)
        if server:  # MLflow's retries cut to seconds, each call guarded (ember/tracking_server.py)
            use_server_http_defaults()
            self._mlflow_client = ServerClient(self._mlflow_client, lambda reason: server_lost(
                uri, self._run_dir, self._experiment_id, self._run_id, reason))

    def continue_run(self, checkpoint: str | Path, run_id: Optional[str] = None) -> Optional[Path]:
        """Continue the MLflow run whose folder holds `checkpoint` (<run_dir>/<experiment_id>/<run_id>/checkpoints/
        <file>), or the run `run_id` of this store (a runs:/<run_id> checkpoint, downloaded elsewhere), instead of
        starting a new one, so a fit resumed from it writes its checkpoints, config.yaml and metrics where the first
        part did, and the checkpoint callback keeps the best-so-far (Lightning restores it only into the folder it
        was saved in). Returns that folder, or None when the checkpoint lies in no run of this store (then a new run
        starts). Call it before the run starts (the trainer's setup starts it)."""
        if self._initialized:
            raise RuntimeError("continue_run() must come before the MLflow run starts")
        path = Path(checkpoint).expanduser().resolve()
        if run_id is None and (len(path.parents) < 4 or path.parents[3] != Path(self._run_dir)):
            return None
        run_id, experiment_id = (path.parents[1].name, path.parents[2].name) if run_id is None else (run_id, None)
        try:
            with store_lock(self._tracking_uri):
                run = self._mlflow_client.get_run(run_id)
                if experiment_id not in (None, run.info.experiment_id):
                    return None
                self._mlflow_client.update_run(run_id, status="RUNNING")
        except MlflowException:
            return None
        self._run_id, self._continued = run_id, True
        return Path(self._run_dir, run.info.experiment_id, run_id)

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """MLflow refuses to change a param a run holds: a continued run given another value of a setting keeps
        the first value in MLflow, with a warning that names it, instead of failing."""
        try:
            super().log_hyperparams(params, *args, **kwargs)
        except MlflowException as err:
            if not self._continued or "Changing param values is not allowed" not in err.message:
                raise
            log.warning("this fit continues a run with settings changed since its start; MLflow keeps each "
                        "setting's first value (%s)", err.message)

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

    def describe_run(self, trainer, pl_module, config_files: list[str], data_settings: dict, stage: str,
                     ckpt_path: Optional[str] = None, command: Optional[list[str]] = None):
        """Name the run, tag its provenance, record its data set and link an evaluation to its training run
        (ember/provenance.py). A run resumed into (its `ember.command` tag set) keeps its name and first tags."""
        client, run_id = self.experiment, self.run_id
        client.set_experiment_tag(self.experiment_id, "mlflow.experimentKind", "custom_model_development")
        if "ember.command" in client.get_run(run_id).data.tags:
            client.set_tag(run_id, "ember.resumed_with", " ".join(["ember", *(command or [])]))
            return
        tags = provenance_tags(trainer, pl_module, command)
        name = run_name(config_files, stage)
        parent = checkpoint_run_id(ckpt_path) if stage != "fit" else None
        tags["mlflow.note.content"] = run_description(stage, pl_module, trainer.datamodule, tags)
        if ckpt_path:
            tags["ember.checkpoint"] = str(Path(ckpt_path).resolve())
        if parent and parent != run_id:
            try:
                name = f"{stage}-{client.get_run(parent).info.run_name}"
                tags["mlflow.parentRunId"] = parent
            except MlflowException:  # a checkpoint from another store: no parent to link
                pass
        if self._run_name is None:
            client.update_run(run_id, name=name)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        data = dataset_input(trainer.datamodule, data_settings)
        if data is not None and stage == "fit":
            client.log_inputs(run_id, datasets=[data])
        if self._system_metrics and self._monitor is None:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # deferred: needs psutil

            self._monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_EVERY_S,
                                                 tracking_uri=self._tracking_uri)
            self._monitor.start()

    def finalize(self, status: str = "success") -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        if self.lost is None:  # a server that stopped answering cannot be told how the run ended
            super().finalize(status)

    @property
    def lost(self) -> Optional[TrackingServerLost]:
        """The error of a tracking server that stopped answering during the run; None while it answers."""
        return self._mlflow_client.lost if isinstance(self._mlflow_client, ServerClient) else None

    def ui_command(self) -> str:
        """How to browse this run's store, as commands that work as printed: `make ui` from the Ember checkout
        (it builds the full MLflow server in .venv-ui once; the project's venv has only the client), or `mlflow ui`
        from any environment with the full `mlflow` installed; a server URI is opened in a browser."""
        uri = self._tracking_uri
        if not uri.startswith("sqlite:///"):
            return f"open {uri}"
        runs = Path(uri[len("sqlite:///"):]).parent
        return (f"make ui RUNS={runs}   (from the Ember checkout), or with a full mlflow: "
                f"mlflow ui --backend-store-uri {uri}; then open {ui_address(self._experiment_id)}")


def ui_address(experiment_id: Optional[str], base: str = "http://127.0.0.1:5000") -> str:
    """The MLflow UI's page for an experiment's runs in its model-training view. MLflow 3 opens an experiment in its
    GenAI view whatever the experiment's `mlflow.experimentKind` tag says unless the address asks for the other
    (`workflowType=machine_learning`); without an experiment, the list of experiments."""
    if experiment_id is None:
        return f"{base}/#/experiments"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


class MLflowSaveConfig(SaveConfigCallback):
    """Saves the resolved config as `config.yaml` in the run folder and as an MLflow artifact.

    The stock callback asserts on a log_dir, which an sqlite tracking URI does not have.
    """

    def __init__(self, *args, command: Optional[list[str]] = None, **kwargs):
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)
        self.command = command  # the ember command line, for the run's `ember.command` tag

    def save_config(self, trainer, pl_module, stage: str) -> None:
        config = self.config.clone()
        if "ckpt_path" in config:  # the run's recipe, not how this process started: a later `ember fit --config
            config.ckpt_path = None  # <run>/config.yaml` must start fresh, not resume silently
        text = self.parser.dump(config, skip_none=False)
        for logger in trainer.loggers:
            if isinstance(logger, EmberMLFlowLogger):
                atomic_write_text(logger.run_path / "config.yaml", text)
                logger.experiment.log_text(logger.run_id, text, "config.yaml")
                params = flat_hyperparams(self.config)
                logger.log_hyperparams(params)
                logger.describe_run(trainer, pl_module, [str(f) for f in self.config.get("config") or []],
                                    {k: v for k, v in params.items() if k.startswith("data.")},
                                    getattr(stage, "value", str(stage)), self.config.get("ckpt_path"), self.command)
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


def run_title(trainer) -> str:
    """"<MLflow run name>: " of the trainer's Ember logger, for a figure's title ("" without one)."""
    for logger in trainer.loggers:
        if isinstance(logger, EmberMLFlowLogger) and logger.run_id:
            return f"{logger.experiment.get_run(logger.run_id).info.run_name}: "
    return ""


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
