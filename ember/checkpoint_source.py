"""Where a checkpoint comes from: `init_from` and `--ckpt_path` take a file, a run folder or an MLflow artifact URI,
and `resolve_checkpoint` turns each into a local file.

- a checkpoint file, as written by `ember fit`: taken as it is;
- a run folder, `<run_dir>/<experiment_id>/<run_id>` (or its `checkpoints` folder, or any folder of .ckpt files):
  its `best.ckpt` for weights (init_from, and --ckpt_path of validate/test/predict), its `last.ckpt` for a resume
  (`ember fit --ckpt_path`);
- `runs:/<run_id>/<artifact path>`, a checkpoint the run logged to MLflow (`best/best.ckpt`, `last/last.ckpt`), or
  `runs:/<run_id>` for the same choice as a run folder, looked up in the tracking store the command uses (the
  Ember logger's tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<run_dir>/mlflow.db). It is downloaded
  once into the cache `<run_dir>/cache/artifacts/<store>/<run_id>/<artifact path>` (store: a hash of the
  tracking URI) and taken from there until the run changes (a resumed run ends again and relogs last.ckpt; a run
  still RUNNING is downloaded each time). A download goes to a hidden folder beside its place and is renamed into
  it whole, so an interrupted one never looks complete.

`models:/` (the MLflow model registry) is refused: Ember logs checkpoints to runs and registers no models.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Literal, Optional

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from ember.errors import EmberConfigError, first_line
from ember.files import atomic_write_text
from ember.tracking import EmberMLFlowLogger, check_reachable, resolve_tracking_uri, store_lock

log = logging.getLogger(__name__)

Purpose = Literal["init", "resume"]  # "init": weights to start from or to evaluate; "resume": a fit to continue
Store = Callable[[], tuple[str, Path]]  # () -> (tracking URI, cache folder); asked for a runs:/ URI only
PICK = {"init": "best", "resume": "last"}
OPTION = {"init": "init_from", "resume": "--ckpt_path"}
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: C:\ is a drive, not a scheme
RUN_ID = re.compile(r"^[A-Za-z0-9_-]+$")
FORMS = ("a checkpoint file, a run folder (<run_dir>/<experiment_id>/<run_id>) or an MLflow run's checkpoint "
         "(runs:/<run_id>, runs:/<run_id>/best/best.ckpt, runs:/<run_id>/last/last.ckpt)")


def resolve_checkpoint(source: str, purpose: Purpose, store: Store, option: Optional[str] = None) -> Path:
    """The local checkpoint file that `source` names (see the module docstring): best.ckpt for purpose "init",
    last.ckpt for "resume" where the source leaves the choice open. `store` gives the tracking URI and the cache
    folder, and is asked only for a runs:/ URI (a local source needs neither, nor a valid tracking URI). `option`
    names the setting in messages. A path that does not exist is returned as it is, for its reader to refuse."""
    option = option or OPTION[purpose]
    path = Path(source).expanduser()
    if path.is_dir():
        return folder_checkpoint(path, purpose, f"{option} {source}")
    scheme = SCHEME.match(source)
    if path.exists() or scheme is None:
        return path
    if scheme[1] == "runs":
        return run_artifact(source, purpose, store, option)
    if scheme[1] == "models":
        raise EmberConfigError(f"{option} {source}: registered models (models:/) are not used by Ember, which logs "
                               f"checkpoints to its runs and registers none: give {FORMS}")
    raise EmberConfigError(f"{option} {source}: Ember does not read {scheme[1]}: URIs: give {FORMS}")


def folder_checkpoint(folder: Path, purpose: Purpose, setting: str) -> Path:
    """A run folder's checkpoints/<best|last>.ckpt (or <folder>/<best|last>.ckpt of a folder of checkpoints)."""
    checkpoints = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    chosen = checkpoints / f"{PICK[purpose]}.ckpt"
    if chosen.is_file():
        log.info("%s: took %s", setting, chosen)
        return chosen
    held = sorted(p.name for p in checkpoints.glob("*.ckpt") if p.is_file())
    if not held:
        raise EmberConfigError(f"{setting}: no checkpoints in {checkpoints}: give a run folder that `ember fit` "
                               "wrote (<run_dir>/<experiment_id>/<run_id>, with checkpoints/*.ckpt) or a checkpoint "
                               "file")
    raise EmberConfigError(f"{setting}: no {chosen.name} in {checkpoints} (it holds {', '.join(held)}): give the file "
                           f"you want, e.g. {checkpoints / held[0]}")


def run_artifact(source: str, purpose: Purpose, store: Store, option: str) -> Path:
    """The local copy of the checkpoint a runs:/<run_id>[/<artifact path>] URI names, downloaded into the store's
    cache unless the copy there is of the run as it is now."""
    run_id, artifact = parse_runs_uri(source, purpose, option)
    setting = f"{option} {source}"
    tracking_uri, cache = store()
    client = open_store(tracking_uri, setting)
    run, size = find_artifact(client, run_id, artifact, tracking_uri, setting)
    target = cache / hashlib.sha256(tracking_uri.encode()).hexdigest()[:12] / run_id / artifact
    stamp = target.with_name(f".{target.name}.stamp")  # the run's end and the artifact's size at the download
    version = f"{run.info.end_time} {size}"
    if run.info.status != "RUNNING" and target.is_file() and stamp.is_file() and stamp.read_text() == version:
        log.info("%s: took %s (downloaded before)", setting, target)
        return target
    download(run_id, artifact, tracking_uri, target, size, setting)
    atomic_write_text(stamp, version)  # after the file: a crash between the two only costs another download
    log.info("%s: downloaded to %s", setting, target)
    return target


def parse_runs_uri(source: str, purpose: Purpose, option: str) -> tuple[str, str]:
    """(run id, artifact path) of runs:/<run_id>[/<artifact path>]; the artifact path defaults to the purpose's
    <best|last>/<best|last>.ckpt."""
    run_id, artifact = split_runs_uri(source)
    artifact = artifact.strip("/") or f"{PICK[purpose]}/{PICK[purpose]}.ckpt"
    if not RUN_ID.match(run_id) or ".." in PurePosixPath(artifact).parts:
        raise EmberConfigError(f"{option} {source} is not a run's artifact URI: write runs:/<run_id> or "
                               "runs:/<run_id>/<artifact path>, e.g. runs:/<run_id>/best/best.ckpt (the run id is "
                               "the `MLflow run` line of `ember fit`'s summary)")
    return run_id, artifact


def open_store(tracking_uri: str, setting: str):
    """An MlflowClient of the tracking store, which must exist: a server that answers, or a sqlite file that is
    there (opening a missing one would create it)."""
    if tracking_uri.startswith(("http://", "https://")):
        try:
            check_reachable(tracking_uri)
        except EmberConfigError as err:
            raise EmberConfigError(f"{setting}: {err}") from None
    elif tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise EmberConfigError(f"{setting}: there is no MLflow store at {tracking_uri}, so no run to take it from: "
                               "point trainer.logger.init_args.run_dir (or tracking_uri, or $MLFLOW_TRACKING_URI) at "
                               "the store that holds the run, or give the run folder or checkpoint file")
    with store_lock(tracking_uri):
        return MlflowClient(tracking_uri)


def find_artifact(client, run_id: str, artifact: str, tracking_uri: str, setting: str) -> tuple[Run, Optional[int]]:
    """The run and the size in bytes of its artifact (None where the store does not say); refused, with the run's
    checkpoints listed, when the run or the artifact does not exist."""
    try:
        run = client.get_run(run_id)
        parent = str(PurePosixPath(artifact).parent)
        listed = {f.path: f for f in client.list_artifacts(run_id, None if parent == "." else parent)}
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise EmberConfigError(f"{setting}: the MLflow store {tracking_uri} has no run {run_id}: check the id "
                                   "(the `MLflow run` line of `ember fit`'s summary), or point "
                                   "trainer.logger.init_args.run_dir (or tracking_uri, or $MLFLOW_TRACKING_URI) at "
                                   "the store that holds it") from None
        raise EmberConfigError(f"{setting}: the MLflow store {tracking_uri} refused ({first_line(err)}): fix the "
                               "store or give the run folder or checkpoint file") from None
    found = listed.get(artifact)
    if found is not None and not found.is_dir:
        return run, found.file_size
    held = checkpoint_artifacts(client, run_id)
    folder = f"<run_dir>/{run.info.experiment_id}/{run_id}"
    if not held:
        raise EmberConfigError(f"{setting}: run {run_id} logged no checkpoints to MLflow (they are logged when a fit "
                               f"ends, unless trainer.logger.init_args.log_model is false): give its run folder "
                               f"{folder} instead")
    raise EmberConfigError(f"{setting}: run {run_id} has no artifact {artifact}; its checkpoints: "
                           f"{', '.join(f'runs:/{run_id}/{path}' for path in held)}")


def checkpoint_artifacts(client, run_id: str, folder: Optional[str] = None, depth: int = 3) -> list[str]:
    """The paths of the run's .ckpt artifacts, `depth` folders down at most (Lightning logs <name>/<name>.ckpt)."""
    found = []
    for entry in client.list_artifacts(run_id, folder):
        if entry.is_dir and depth > 1:
            found += checkpoint_artifacts(client, run_id, entry.path, depth - 1)
        elif not entry.is_dir and entry.path.endswith(".ckpt"):
            found.append(entry.path)
    return sorted(found)


def download(run_id: str, artifact: str, tracking_uri: str, target: Path, size: Optional[int], setting: str):
    """Download the artifact into a hidden folder beside `target` and rename the file into place once whole; the
    hidden folder goes in any case."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part"))
    try:
        got = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(part),
                                                       tracking_uri=tracking_uri))
        if size is not None and got.stat().st_size != size:
            raise OSError(f"got {got.stat().st_size} of {size} bytes")
        os.replace(got, target)
    except (MlflowException, OSError) as err:
        raise EmberConfigError(f"{setting}: the download into {target.parent} failed ({first_line(err)}): nothing "
                               "was kept; try again once the store answers and the folder has room") from None
    finally:
        shutil.rmtree(part, ignore_errors=True)


def artifact_run_id(source: Optional[str]) -> Optional[str]:
    """The run id of a runs:/ URI (None for any other source)."""
    if not source or not str(source).startswith("runs:"):
        return None
    run_id = split_runs_uri(str(source))[0]
    return run_id if RUN_ID.match(run_id) else None


def split_runs_uri(source: str) -> tuple[str, str]:
    """(run id, artifact path) as written in runs:/<run_id>[/<artifact path>], unchecked."""
    run_id, _, artifact = source[len("runs:"):].lstrip("/").partition("/")
    return run_id, artifact


def artifact_store(run_dir: str | Path, tracking_uri: Optional[str] = None) -> tuple[str, Path]:
    """(tracking URI, cache folder) of a run_dir: the URI as the Ember logger resolves it (tracking_uri, else
    $MLFLOW_TRACKING_URI, else sqlite:///<run_dir>/mlflow.db) and <run_dir>/cache/artifacts."""
    return resolve_tracking_uri(str(run_dir), tracking_uri), Path(run_dir).expanduser().resolve() / "cache/artifacts"


def trainer_store(trainer) -> tuple[str, Path]:
    """(tracking URI, cache folder) of a trainer: its Ember logger's store and run_dir; without one, those of the
    trainer's default_root_dir (`runs` with no trainer)."""
    for logger in getattr(trainer, "loggers", None) or []:
        if isinstance(logger, EmberMLFlowLogger):
            return logger._tracking_uri, Path(logger.save_dir) / "cache/artifacts"
    return artifact_store(getattr(trainer, "default_root_dir", None) or "runs")
