"""Plugins and utilities used only by the tests (importable as `helpers.X` in test configs)."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import torch
from torch import Tensor, nn

from ember.base import ReasoningCore, ReasoningOutput, SensoryEncoder, SensoryOutput
from ember.cli.main import main
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
