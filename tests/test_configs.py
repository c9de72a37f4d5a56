"""Every YAML in configs/ parses and builds; overlays combine with the quickstart."""

from pathlib import Path

import pytest
import yaml
from lightning.pytorch import LightningModule

from ember import registry
from ember.cli.lightning import EmberCLI

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not {"ablate", "cloud"} & set(p.parts))
OVERLAYS = sorted((ROOT / "configs/ablate").glob("*.yaml"))
CLOUD = sorted((ROOT / "configs/cloud").glob("*.yaml"))


def build(*configs: Path, tmp_path, extra=()) -> EmberCLI:
    registry.load_plugins()
    args = [a for c in configs for a in ("--config", str(c))]
    args += ["--trainer.logger.init_args.run_dir", str(tmp_path), *extra]
    return EmberCLI(args=args, run=False)


def _data_path(config: Path):
    data = yaml.safe_load(config.read_text()).get("data", {})
    return (data.get("init_args") or {}).get("path")


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses_and_builds(config, tmp_path):
    extra = []
    path = _data_path(config)
    if path is not None and not (ROOT / path).exists():  # e.g. enwik8, which users bring themselves
        (tmp_path / "stand_in.txt").write_text("text " * 100)
        extra = ["--data.init_args.path", str(tmp_path / "stand_in.txt")]
    if "bench" in config.parts:  # GPU-sized (d=768 x 12 layers, 114-152M parameters): same structure, narrower
        extra += ["--model.init_args.backbone.init_args.d_model", "96"]
    cli = build(config, tmp_path=tmp_path, extra=extra)
    assert isinstance(cli.model, LightningModule)  # EmberModel, or a plugin trained alone
    assert sum(p.numel() for p in cli.model.parameters()) > 0


def _overlay_base(overlay: Path) -> Path:
    """The config an overlay is written for: its `# base: PATH` header, else the quickstart."""
    for line in overlay.read_text().splitlines():
        if line.startswith("# base:"):
            return ROOT / line.split(":", 1)[1].strip()
    return ROOT / "configs/quickstart.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_ablation_overlay_changes_its_base_config(overlay, tmp_path):
    base_config = _overlay_base(overlay)
    base = build(base_config, tmp_path=tmp_path)
    ablated = build(base_config, overlay, tmp_path=tmp_path)
    dump = lambda cli: cli.parser.dump(cli.config, skip_none=False)  # noqa: E731
    assert dump(ablated) != dump(base)
    assert isinstance(ablated.model, LightningModule)


class ParseOnlyCLI(EmberCLI):
    """Parses and instantiates the config's classes but builds no Trainer (no GPU here)."""

    def instantiate_classes(self):
        self.config_init = self.parser.instantiate_classes(self.config)


@pytest.mark.slow
@pytest.mark.parametrize("overlay", CLOUD, ids=lambda p: p.stem)
def test_scale_out_overlay_parses_and_its_strategy_builds(overlay, tmp_path):
    registry.load_plugins()
    cli = ParseOnlyCLI(args=["--config", str(ROOT / "configs/quickstart.yaml"), "--config", str(overlay),
                             "--trainer.logger.init_args.run_dir", str(tmp_path)], run=False)
    trainer = cli.config_init.trainer
    if overlay.stem.endswith("_cpu"):  # fsdp2_cpu: the CPU twin, trained in tests/cli/test_distributed.py
        assert trainer.accelerator == "cpu" and type(trainer.strategy).__name__ == "ModelParallelStrategy"
        return
    assert trainer.accelerator == "gpu" and trainer.precision == "bf16-mixed"
    assert trainer.strategy == "ddp" or type(trainer.strategy).__name__ == "FSDPStrategy"


@pytest.mark.slow
def test_limit_val_batches_stays_an_int(tmp_path):
    # Lightning issue #21259: `limit_val_batches: 1` must not become 1.0 (= all batches)
    cli = build(ROOT / "configs/debug/quickstart.yaml", tmp_path=tmp_path)
    assert cli.trainer.limit_val_batches == 2 and isinstance(cli.trainer.limit_val_batches, int)
