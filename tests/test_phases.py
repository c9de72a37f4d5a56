"""Training phases: each starts from the previous phase's checkpoint (model.init_from)."""

import pytest
import torch

from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.model import EmberModel
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.heuristic import HeuristicNeuromodulator
from helpers import ROOT, run_cli


def _model(pm: bool, d: int = 16) -> EmberModel:
    memory = (lambda width: LowRankPM(width, neuromodulator=HeuristicNeuromodulator, slots=2, period=8)) if pm else None
    return EmberModel(NMLBackbone(d_model=d, blocks=1, layers_per_block=1, heads=2, window=8, pm=memory))


def _save(model: EmberModel, path):
    torch.save({"state_dict": model.state_dict()}, path)


def test_a_phase_copies_the_shared_weights_and_keeps_new_ones_at_init(tmp_path):
    earlier, later = _model(pm=False), _model(pm=True)
    _save(earlier, tmp_path / "a.ckpt")
    fresh_pm = {k: v.clone() for k, v in later.state_dict().items() if ".pm." in k}
    report = later.load_phase(str(tmp_path / "a.ckpt"))
    assert report["new"] == sorted(fresh_pm) and not report["dropped"]
    for name, value in earlier.state_dict().items():
        torch.testing.assert_close(later.state_dict()[name], value)
    for name, value in fresh_pm.items():
        torch.testing.assert_close(later.state_dict()[name], value)


def test_a_missing_or_resized_phase_checkpoint_is_refused(tmp_path):
    with pytest.raises(EmberConfigError, match="run the earlier phase first"):
        _model(pm=True).load_phase(str(tmp_path / "missing.ckpt"))
    _save(_model(pm=False, d=32), tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointMismatchError, match="changed shape"):
        _model(pm=False).load_phase(str(tmp_path / "wide.ckpt"))


@pytest.mark.slow
def test_phase_chain_a_then_b_on_the_cli(tmp_path):
    def fit(phase: str, *extra: str):
        return run_cli("fit", "--config", str(ROOT / f"configs/phases/{phase}.yaml"),
                       "--trainer.logger.init_args.run_dir", str(tmp_path / "runs"), "--trainer.max_steps", "1",
                       "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "1",
                       "--trainer.accelerator", "cpu", "--checkpoint.dirpath", str(tmp_path / phase), *extra)

    assert fit("A", "--data.init_args.seq_len", "64", "--data.init_args.batch_size", "2") == 0
    assert (tmp_path / "A/last.ckpt").is_file()
    assert fit("B", "--model.init_args.init_from", str(tmp_path / "A/last.ckpt"), "--data.init_args.batch_size",
               "2", "--data.init_args.val_size", "2") == 0
    b = torch.load(tmp_path / "B/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert any(".pm." in k for k in b)
