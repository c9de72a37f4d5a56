"""A run logged to an MLflow tracking server that stops answering (killed, restarted, the network broken).

MLflow's HTTP client retries a failed request 7 times over about 4 minutes (meant for rate-limited cloud services),
and its final error named no server: a fit whose server went down hung minutes per call and ended in a traceback, or
in a message about a file operation. Here an Ember run against a server cuts the retries to seconds (unless the user
set MLflow's variables), and its client is guarded (ServerClient): the first call that finds the server gone raises
TrackingServerLost, one message naming the server, the run's local folder and the command that resumes the fit;
later calls raise it again at once instead of retrying. EmberMLFlowLogger (ember/tracking.py) uses both for an
http(s) tracking URI.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Optional

from mlflow.exceptions import MlflowException
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout

from ember.errors import EmberError

# 3 retries over about 7 s (backoff 0, 2, 4 s), 30 s for an answer
SERVER_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def use_server_http_defaults():
    """SERVER_HTTP_DEFAULTS for this process, where the user has not set the variable (MLflow reads them at each
    request)."""
    for name, value in SERVER_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


class TrackingServerLost(EmberError):
    """The tracking server of a run stopped answering after the run started."""


def server_lost(uri: str, run_dir: str, experiment_id: Optional[str], run_id: Optional[str],
                reason: str) -> TrackingServerLost:
    """The error for the server `uri` that stopped answering (`reason`): the run's local folder
    <run_dir>/<experiment_id>/<run_id>, and the command that resumes the fit there once the server is back."""
    said = f"the MLflow tracking server {uri} stopped answering ({reason})"
    if run_id is None:
        return TrackingServerLost(f"{said} before the run started: start it again, or log to a local store "
                                  "(trainer.logger.init_args.offline_fallback true, or no tracking_uri)")
    folder = Path(run_dir, str(experiment_id), run_id)
    last = folder / "checkpoints" / "last.ckpt"
    resume = (f"once the server is back, resume the fit: ember fit --config {folder / 'config.yaml'} "
              f"--ckpt_path {last}" if last.exists() else "no checkpoint was saved yet")
    return TrackingServerLost(f"{said}, so Ember stopped; MLflow run {run_id} stays RUNNING there and its local "
                              f"files are in {folder}: {resume}")


def connection_failure(err: Optional[BaseException]) -> Optional[str]:
    """What broke the connection to a tracking server behind an MlflowException (MLflow wraps the requests error it
    gave up on after its retries), e.g. "[Errno 111] Connection refused"; None for any other error."""
    for _ in range(8):  # the chain of causes, bounded
        if err is None:
            return None
        if isinstance(err, RequestsTimeout):
            return f"no answer within {os.environ.get('MLFLOW_HTTP_REQUEST_TIMEOUT', '120')} s"
        if isinstance(err, RequestsConnectionError):
            errno = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
            return errno.group(0).strip() if errno else type(err).__name__
        err = err.__cause__ or err.__context__
    return None


class ServerClient:
    """An MlflowClient with each call guarded: a call that finds the server gone raises `lost(reason)`
    (TrackingServerLost), kept in `.lost`, and every later call raises it again at once, so the fit's teardown does
    not wait through the retries once more per call."""

    def __init__(self, client, lost: Callable[[str], TrackingServerLost]):
        self._client, self._describe, self.lost = client, lost, None

    def __getattr__(self, name: str):
        if name.startswith("__") or "_client" not in self.__dict__:  # copy and pickle probe a bare instance
            raise AttributeError(name)
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def guarded(*args, **kwargs):
            if self.lost is not None:
                raise self.lost
            try:
                return method(*args, **kwargs)
            except MlflowException as err:
                reason = connection_failure(err)
                if reason is None:
                    raise
                self.lost = self._describe(reason)
                raise self.lost from None

        return guarded
