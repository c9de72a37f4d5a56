"""Plugins and utilities used only by the tests (importable as `helpers.X` in test configs).

What test files of more than one module share lives here too (tests/conftest.py says where each test goes):
audio signals and encoder sizes, the binding test's model and data, the shared puzzle sets, byte text. What one
test file alone uses stays in that file; fixtures go in the conftest.py of the folder that shares them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sqlite3
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from ember.base import ReasoningCore, ReasoningOutput, SensoryEncoder, SensoryOutput
from ember.cli.main import main
from ember.cli.runs import build_model
from ember.data_modules.binding import BindingData
from ember.plugins.backbone.nml import NMLBackbone

ROOT = Path(__file__).resolve().parents[1]
DEBUG = str(ROOT / "configs/debug/quickstart.yaml")


def fit_args(run_dir: Path, *extra: str, config: str = DEBUG) -> list[str]:
    return ["fit", "--config", config, "--trainer.logger.init_args.run_dir", str(run_dir), *extra]


def run_cli(*args: str) -> int:
    return main(list(args))


def session_state(run: tuple[str, str], folder: Path, text: str) -> Path:
    """`folder/state.mem`: the memory state of a trained run (config, checkpoint) after `ember session` streamed
    `text` (written to `folder/text.txt`) in spans of 64 bytes."""
    config, ckpt = run
    (folder / "text.txt").write_text(text)
    assert run_cli("session", "--config", config, "--ckpt_path", ckpt, "--memory_state", str(folder / "state.mem"),
                   "--input", str(folder / "text.txt"), "--span", "64") == 0
    return folder / "state.mem"


def run_folder(run_dir: Path) -> Path:
    """The single <experiment>/<run> folder under run_dir."""
    (folder,) = [p for p in run_dir.glob("*/*") if (p / "checkpoints").is_dir()]
    return folder


def mlflow_rows(run_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(run_dir / "mlflow.db") as db:
        return db.execute(sql).fetchall()


class NaNAfterBackbone(NMLBackbone):
    """Test backbone whose logits turn NaN from its `nan_after`-th training forward on.

    Args:
        nan_after: number of finite training forwards before NaN.
    """

    def __init__(self, nan_after: int = 5, d_model: int = 32, heads: int = 4, window: int = 16):
        super().__init__(d_model=d_model, layers_per_block=1, heads=heads, window=window)
        self.nan_after, self.calls = nan_after, 0

    def forward(self, tokens, state=None, prefix=None):
        out = super().forward(tokens, state, prefix)
        if self.training:
            self.calls += 1
            if self.calls > self.nan_after:
                return type(out)(out.logits * float("nan"), out.state)
        return out


class ToySensory(SensoryEncoder):
    """Test sensory encoder: mean-pools a waveform into s tokens.

    Args:
        d_model: token width.
        tokens: sensory tokens s.
    """

    def __init__(self, d_model: int = 32, tokens: int = 2):
        super().__init__()
        self.d_model, self.tokens = d_model, tokens
        self.proj = nn.Linear(1, d_model)
        self.mod = nn.Linear(d_model, 3)

    def forward(self, signal: Tensor) -> SensoryOutput:
        pooled = signal.view(signal.shape[0], self.tokens, -1).mean(-1, keepdim=True)  # (b, s, 1)
        tokens = self.proj(pooled)
        return SensoryOutput(tokens, self.mod(tokens.mean(1)))


class ToyReasoning(ReasoningCore):
    """Test reasoning core: one MLP refinement of the input tokens.

    Args:
        d_model: token width.
    """

    def __init__(self, d_model: int = 32):
        super().__init__()
        self.d_model = d_model
        self.f = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.halt = nn.Linear(d_model, 1)

    def forward(self, x: Tensor, start: ReasoningOutput | None = None) -> ReasoningOutput:
        y = self.f(x if start is None else x + start.answer)
        h = torch.sigmoid(self.halt(y.mean(1))).squeeze(-1)
        return ReasoningOutput(y, h, 1 - h)


def load_script(path: str):
    """Import a script of the repository (benchmarks/*/*.py: not a package) as a module."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def untrained_checkpoint(config: str, folder: Path) -> str:
    """A checkpoint of a config's model at its init (a script that reads weights, without training them first)."""
    path = folder / "w.ckpt"
    torch.save({"state_dict": build_model(config).state_dict()}, path)
    return str(path)


# ---- audio: sample rate, signals, encoder sizes (ops, data_modules, plugins/sensory) ------------------------------
SR = 16000
TINY_AUDIO_ENCODER = dict(d_model=32, depth=1, heads=4, bands=32, patch=4, channels=8)
SMALL_AUDIO_ENCODER = dict(d_model=32, depth=1, heads=4, bands=16, patch=4, channels=4)  # the binding test's


def tone(freq: float, seconds: float = 1.0, rate: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def f0_estimate(x: np.ndarray, rate: int = SR) -> float:
    """Autocorrelation pitch of a voiced stretch, searched in 70-500 Hz."""
    x = x - x.mean()
    ac = np.correlate(x, x, "full")[len(x) - 1 :]
    lo, hi = rate // 500, rate // 70
    return rate / (lo + int(np.argmax(ac[lo:hi])))


# ---- the binding test of issue #5: its backbone and data (data_modules, plugins/sensory, EmberModel) -------------
def binding_backbone() -> NMLBackbone:
    return NMLBackbone(d_model=32, layers_per_block=2, heads=4, window=16)


def binding_data(**kwargs) -> BindingData:
    return BindingData(**{"train_size": 16, "val_size": 16, "test_size": 16, "seconds": 0.3, "batch_size": 4,
                          **kwargs})


# ---- puzzle sets of the shared data folder (/work/shared/data beside the checkout), and sudoku text ------------
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SUDOKU_DIR = SHARED / "sudoku_hard_tdoku"
HARD = SUDOKU_DIR / "puzzles5_forum_hardest_1905_11+.txt"
MAZE_DIR = SHARED / "maze_hard_30x30_1k"


def needs(path: Path):
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not mounted)")


def digits(tokens: np.ndarray) -> list[int]:
    return (np.asarray(tokens, dtype=np.int64) - 1).tolist()


def grid_text(grid: list[int]) -> str:
    return "".join(str(d) if d else "." for d in grid)


# ---- memory tasks: byte tokens as text ----------------------------------------------------------------------------
def tokens_text(tokens) -> str:
    return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


def token_by_token(model: nn.Module, tokens: Tensor) -> Tensor:
    """A stateful model's outputs for tokens (b, n) fed one token at a time, the state carried: (b, n, ...)."""
    steps, state = [], None
    for i in range(tokens.shape[1]):
        out, state = model(tokens[:, i : i + 1], state)
        steps.append(out)
    return torch.cat(steps, 1)


# ---- fuzzing (tests/cli/test_fuzz_*.py): seeded cases, damaged copies of a file, snapshots, the tally ------------
FUZZ_SEED = int(os.environ.get("EMBER_FUZZ_SEED", "0"))
FUZZ_EXAMPLES = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "3"))  # cases per target: a kind of input and its reader
FUZZ_CHEAP = 4  # targets that run no command take this many times more: kills while writing (WAV reads: 8x that)
FUZZ_TALLY: dict[str, Counter] = {}  # kind -> cases, handled, kept: tests/cli/conftest.py prints it at the end
DAMAGE = ("emptied", "truncated", "random", "flipped", "zeroed", "overwritten", "repeated")
ODD_JSON = (None, 0, -1, 1.5, 2**63, "", "x", True, [], {}, [1, "a"], {"a": None})
# `ember fit` for one step and one short validation, no MLflow run: a fuzz case that gets past construction
ONE_STEP = ("--trainer.logger", "false", "--trainer.max_steps", "1", "--trainer.val_check_interval", "1",
            "--trainer.limit_val_batches", "2", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false")


def fuzz_rng(*names) -> np.random.Generator:
    """The generator of one fuzz case, from EMBER_FUZZ_SEED and the case's names (target, index): a case replays
    alone, whatever ran before it."""
    return np.random.default_rng([FUZZ_SEED, *(zlib.crc32(str(name).encode()) for name in names)])


def damaged(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """A damaged copy of a file's bytes and what was done to it: emptied, truncated, replaced by random bytes,
    bits flipped, a stretch zeroed or overwritten with random bytes, or a stretch repeated."""
    n, how = len(data), DAMAGE[int(rng.integers(len(DAMAGE)))]
    a = int(rng.integers(0, n))
    b = min(n, a + int(rng.integers(1, 257)))
    if how == "emptied":
        return how, b""
    if how == "truncated":
        return f"truncated to {a} of {n} bytes", data[:a]
    if how == "random":
        size = int(rng.integers(1, 2 * n + 2))
        return f"{size} random bytes", rng.bytes(size)
    if how == "flipped":
        out, places = bytearray(data), sorted(int(i) for i in rng.integers(0, n, int(rng.integers(1, 9))))
        for i in places:
            out[i] ^= 1 << int(rng.integers(8))
        return f"bits flipped at bytes {places}", bytes(out)
    middle = {"zeroed": bytes(b - a), "overwritten": rng.bytes(b - a), "repeated": data[a:b] * 2}[how]
    return f"bytes {a}:{b} {how}", data[:a] + middle + data[b:]


def damaged_json(value, rng: np.random.Generator) -> tuple[str, object]:
    """A JSON document with one node (the root or one inside it) replaced by a value of another type, or dropped
    from its object: what a hand edit or another program's file looks like."""
    places = [()]
    stack = [((), value)]
    while stack:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            places.append((*path, key))
            stack.append(((*path, key), child))
    path = places[int(rng.integers(len(places)))]
    if not path:
        new = ODD_JSON[int(rng.integers(len(ODD_JSON)))]
        return f"the whole document replaced by {new!r}", new
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
        return f"{list(path)} dropped", value
    parent[path[-1]] = ODD_JSON[int(rng.integers(len(ODD_JSON)))]
    return f"{list(path)} set to {parent[path[-1]]!r}", value


def snapshot(*roots: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mode of every file under the roots (files or folders)."""
    files = [p for root in map(Path, roots) for p in ([root] if root.is_file() else sorted(root.rglob("*")))]
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode) for p in files if p.is_file()}


def changed(before: dict[str, tuple[str, int]]) -> list[str]:
    """The files of a snapshot that are now gone, or hold other bytes or another mode."""
    return [path for path, (digest, mode) in before.items() if snapshot(Path(path)).get(path) != (digest, mode)]


def tally(kind: str, handled: bool, kept: bool, outcome: str = ""):
    """Count one fuzz case of `kind`: handled (exit 0 or 2, no traceback or hang), kept (nothing lost), and an
    outcome to count besides (e.g. which version a kill left)."""
    FUZZ_TALLY.setdefault(kind, Counter()).update(cases=1, handled=int(handled), kept=int(kept))
    if outcome:
        FUZZ_TALLY[kind][outcome] += 1


def serve_folder(folder: Path, requests: list[str] | None = None) -> ServedFolder:
    """A loopback HTTP server of `folder`, as a context manager: `with serve_folder(folder) as base_url:` gives
    http://127.0.0.1:PORT serving the folder's files (a daemon thread; stopped when the block ends). Each request's
    "PATH CODE" is appended to `requests` when given."""
    return ServedFolder(folder, requests)


class ServedFolder:
    """serve_folder's context manager: a ThreadingHTTPServer bound to 127.0.0.1 on a free port."""

    def __init__(self, folder: Path, requests: list[str] | None):
        import functools  # imported here: this helper is appended to the file, its imports stay with it
        import http.server

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                if requests is not None:
                    requests.append(f"{self.path} {int(code)}")

            def log_message(self, format, *args):  # quiet: the test reads `requests`
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> str:
        import threading  # imported here, as in __init__

        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


# ---- a real MLflow tracking server (tests/test_tracking_server.py): the full mlflow of .venv-ui, `make ui-env` ------
MLFLOW_SERVER = ROOT / ".venv-ui" / "bin" / "mlflow"


def needs_mlflow_server():
    if not MLFLOW_SERVER.exists():
        pytest.skip(f"{MLFLOW_SERVER} is absent: `make ui-env` builds the full MLflow server there")


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    import socket  # imported here: this helper is appended to the file, its imports stay with it

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mlflow_server(folder: Path, port: int = 0, timeout: float = 120.0) -> MLflowServer:
    """A loopback MLflow tracking server of .venv-ui, as a context manager: `with mlflow_server(folder) as uri:` gives
    http://127.0.0.1:PORT once the server answers /health (within `timeout` s), its store folder/server.db and its
    proxied artifacts (clients upload through the server: mlflow-artifacts:/ URIs) in folder/artifacts, its output in
    folder/server.log; its process group is stopped when the block ends. port 0: a free one."""
    return MLflowServer(folder, port, timeout)


class MLflowServer:
    """mlflow_server's context manager: `mlflow server --workers 1` in a session of its own, so that stop() ends the
    server and its workers together. Entered again after stop(), it starts on the same port and store."""

    def __init__(self, folder: Path, port: int, timeout: float):
        self.folder, self.port, self.timeout, self.process = Path(folder).resolve(), port, timeout, None

    def __enter__(self) -> str:
        import subprocess  # imported here, as in free_port
        import time
        import urllib.request

        needs_mlflow_server()
        self.port = self.port or free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        uri = f"http://127.0.0.1:{self.port}"
        command = [str(MLFLOW_SERVER), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                   "--backend-store-uri", f"sqlite:///{self.folder}/server.db", "--serve-artifacts",
                   "--artifacts-destination", str(self.folder / "artifacts")]
        with open(self.folder / "server.log", "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=5).close()
                return uri
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                said = "exited" if self.process.poll() is not None else f"did not answer in {self.timeout:.0f} s"
                self.stop()
                log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the MLflow server {uri} {said}; its log ends:\n{log}")
            time.sleep(0.25)

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self, kill: bool = False):
        """End the server's process group: SIGTERM (SIGKILL after 10 s), or at once SIGKILL (`kill`, a crash)."""
        import signal  # imported here, as in free_port
        import subprocess

        if self.process is None:
            return
        for sig in (signal.SIGKILL if kill else signal.SIGTERM, signal.SIGKILL):  # then whatever of the group is left
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.process.wait()
        self.process = None


def signal_after_first_checkpoint(command: list[str], runs: Path, log: Path, sig, timeout: float = 180,
                                  **popen) -> tuple[int, str]:
    """Run `command` (its output to `log`), send it `sig` once a run under `runs` has its first last.ckpt, and wait
    for it: (exit status, the log). Fails with the log's tail if it ends first or `timeout` s pass; a process still
    running when this fails is killed."""
    import subprocess  # imported here: this helper is appended to the file, its imports stay with it
    import time

    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        deadline = time.monotonic() + timeout
        while not list(runs.glob("*/*/checkpoints/last.ckpt")):
            assert proc.poll() is None, f"it ended ({proc.returncode}) before a checkpoint:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no last.ckpt after {timeout} s"
            time.sleep(0.1)
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, log.read_text()
