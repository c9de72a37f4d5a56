"""Plugins and utilities used only by the tests (importable as `helpers.X` in test configs).

What test files of more than one module share lives here too (tests/conftest.py says where each test goes):
audio signals and encoder sizes, the binding test's model and data, the shared puzzle sets, byte text. What one
test file alone uses stays in that file; fixtures go in the conftest.py of the folder that shares them.
"""

from __future__ import annotations

import importlib.util
import sqlite3
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

    def forward(self, x: Tensor) -> ReasoningOutput:
        y = self.f(x)
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
