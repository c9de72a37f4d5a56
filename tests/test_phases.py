"""Training phases: each starts from the previous phase's checkpoint (model.init_from)."""

import functools
import logging

import pytest
import torch

from ember.cli.runs import build_model
from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.model import EmberModel
from ember.ops.memory_read import MemoryReadLayer
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.memory.episodic import EpisodicStore
from ember.plugins.memory.procedural import LowRankPM
from ember.plugins.neuromod.heuristic import HeuristicNeuromodulator
from ember.plugins.neuromod.learned import LearnedNeuromodulator
from helpers import ROOT, run_cli

PHASES = "ABCDE"


def _model(pm: bool, d: int = 16, em: bool = False, learned: bool = False, blocks: int = 1,
           layers_per_block: int = 1) -> EmberModel:
    controller = LearnedNeuromodulator if learned else HeuristicNeuromodulator
    memory = functools.partial(LowRankPM, neuromodulator=controller, slots=2, period=8) if pm else None
    episodic = functools.partial(EpisodicStore, neuromodulator=LearnedNeuromodulator, items=8, top_k=2, period=8,
                                 writes=2) if em else None
    return EmberModel(NMLBackbone(d_model=d, blocks=blocks, layers_per_block=layers_per_block, heads=2, window=8,
                                  pm=memory, em=episodic))


def _save(model: EmberModel, path):
    torch.save({"state_dict": model.state_dict()}, path)


def _by_role(model: EmberModel, layers_per_block: int) -> dict[str, torch.nn.Module]:
    """{"block<k>.em" / "block<k>.layer<j>": module} of a model's layer stack, read off the modules (not off
    init_from's own naming): the p-th NMLLayer is layer p % L of block p // L, an EM belongs to the next one's."""
    places, p = {}, 0
    for layer in model.backbone.stack.layers:
        if isinstance(layer, MemoryReadLayer):
            places[f"block{p // layers_per_block}.em"] = layer
        else:
            places[f"block{p // layers_per_block}.layer{p % layers_per_block}"] = layer
            p += 1
    return places


def _assert_copied_by_role(earlier: EmberModel, later: EmberModel, layers_per_block: int) -> set[str]:
    """Each weight of `earlier` that `later` has sits there unchanged: outside the stack by name, inside it at the
    same role. Returns the roles of `earlier` that `later` lacks."""
    later_weights = later.state_dict()
    for name, value in earlier.state_dict().items():
        if ".stack.layers." not in name:
            torch.testing.assert_close(later_weights[name], value, rtol=0, atol=0, msg=name)
    mine, theirs = _by_role(earlier, layers_per_block), _by_role(later, layers_per_block)
    for role in mine.keys() & theirs.keys():
        place = theirs[role].state_dict()
        for name, value in mine[role].state_dict().items():
            torch.testing.assert_close(place[name], value, rtol=0, atol=0, msg=f"{role}.{name}")
    return set(mine) - set(theirs)


def _em_keys(model: EmberModel) -> list[str]:
    entries = [f"backbone.stack.layers.{i}." for i, layer in enumerate(model.backbone.stack.layers)
               if isinstance(layer, MemoryReadLayer)]
    return sorted(k for k in model.state_dict() if k.startswith(tuple(entries)))


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


@pytest.mark.parametrize("em_before, em_after", [(False, True), (True, False)], ids=["add EMs", "drop EMs"])
def test_adding_or_dropping_episodic_memory_copies_each_layer_to_its_role(em_before, em_after, tmp_path, caplog):
    build = functools.partial(_model, pm=True, learned=True, blocks=2, layers_per_block=2)
    earlier, later = build(em=em_before), build(em=em_after)
    _save(earlier, tmp_path / "earlier.ckpt")
    fresh_em = {k: later.state_dict()[k].clone() for k in _em_keys(later)}
    with caplog.at_level(logging.INFO, logger="ember.init_from"):
        report = later.load_phase(str(tmp_path / "earlier.ckpt"))
    if em_after:  # indices differ (layer 0 of block 1 is entry 2 before, 4 after), roles do not
        assert report["new"] == sorted(fresh_em) and not report["dropped"]
        assert "new: backbone.stack.layers[block{0,1}.em] (not in the checkpoint" in caplog.text
        for name, value in fresh_em.items():
            torch.testing.assert_close(later.state_dict()[name], value)
    else:
        assert not report["new"] and report["dropped"] == _em_keys(earlier)
        assert "dropped: backbone.stack.layers[block{0,1}.em] (not in this model)" in caplog.text
    lacking = _assert_copied_by_role(earlier, later, layers_per_block=2)
    assert lacking == ({"block0.em", "block1.em"} if em_before else set())
    controller = "pm.memory.controller.net.0.weight"  # the learned PM controller goes with its layer
    torch.testing.assert_close(_by_role(later, 2)["block1.layer0"].state_dict()[controller],
                               _by_role(earlier, 2)["block1.layer0"].state_dict()[controller], rtol=0, atol=0)


@pytest.mark.parametrize("earlier, later", [
    (dict(em=True, blocks=2, layers_per_block=1), dict(em=True, blocks=1, layers_per_block=2)),
    (dict(em=False, blocks=1, layers_per_block=2), dict(em=True, blocks=1, layers_per_block=3)),
    (dict(em=False, blocks=2, layers_per_block=1), dict(em=False, blocks=3, layers_per_block=1)),
], ids=["blocks regrouped", "EMs added and a layer", "layers added without EMs"])
def test_a_copy_that_moves_a_layer_into_another_block_is_refused(earlier, later, tmp_path):
    _save(_model(pm=False, **earlier), tmp_path / "earlier.ckpt")
    model = _model(pm=False, **later)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match="into another block's place. Keep the earlier phase's blocks"):
        model.load_phase(str(tmp_path / "earlier.ckpt"))
    for name, value in model.state_dict().items():  # refused before anything is copied
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_a_block_added_at_the_end_is_new_and_the_rest_copied(tmp_path):
    earlier, later = _model(pm=False, em=True, blocks=1), _model(pm=False, em=True, blocks=2)
    _save(earlier, tmp_path / "earlier.ckpt")
    report = later.load_phase(str(tmp_path / "earlier.ckpt"))
    assert not report["dropped"] and all(k.startswith(("backbone.stack.layers.2.", "backbone.stack.layers.3."))
                                         for k in report["new"])
    assert not _assert_copied_by_role(earlier, later, layers_per_block=1)


@pytest.mark.slow
def test_the_phase_chain_configs_copy_every_weight_of_the_previous_phase_to_its_place(tmp_path):
    models = {phase: build_model(str(ROOT / f"configs/phases/{phase}.yaml")) for phase in PHASES}
    for before, after in zip(PHASES, PHASES[1:]):
        path = tmp_path / f"{before}.ckpt"
        _save(models[before], path)
        report = models[after].load_phase(str(path))
        assert not report["dropped"], f"{before} -> {after}: {report['dropped']}"
        assert len(report["copied"]) == len(models[before].state_dict())
        assert not _assert_copied_by_role(models[before], models[after], layers_per_block=1)  # configs: 2 x 1


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
