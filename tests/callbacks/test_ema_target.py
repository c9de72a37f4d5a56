"""EMATargetUpdate: the momentum schedule and update by hand, once per optimizer step, exact after resume."""

import math

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from ember.callbacks.ema_target import EMATargetUpdate, ema_momentum
from ember.errors import EmberConfigError
from ember.plugins.sensory.encoder import SpikingAudioEncoder
from ember.plugins.sensory.jepa import AudioJEPA
from helpers import TINY_AUDIO_ENCODER as TINY


def test_momentum_schedule_exact_values():
    assert ema_momentum(0, 100) == 0.996
    assert ema_momentum(50, 100) == pytest.approx(0.998, abs=1e-15)
    assert ema_momentum(100, 100) == 1.0 and ema_momentum(250, 100) == 1.0
    assert ema_momentum(25, 100) == pytest.approx(1 - 0.004 * (1 + math.cos(math.pi / 4)) / 2, abs=1e-15)


def test_update_target_by_hand():
    online, target = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        online.weight.fill_(1.0), online.bias.fill_(1.0), target.weight.zero_(), target.bias.fill_(2.0)
    EMATargetUpdate().update_target(target, online, 0.996)
    assert torch.allclose(target.weight, torch.full((2, 2), 0.004))  # 0.996 * 0 + 0.004 * 1
    assert torch.allclose(target.bias, torch.full((2,), 0.996 * 2 + 0.004))


class EMAToy(LightningModule):
    """An online Linear that SGD with lr 0 leaves alone, so the target follows a closed form."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.target_encoder = nn.Linear(2, 2).requires_grad_(False)
        with torch.no_grad():
            self.encoder.weight.fill_(1.0), self.encoder.bias.fill_(1.0)
            self.target_encoder.weight.zero_(), self.target_encoder.bias.zero_()

    def training_step(self, batch, batch_idx):
        return self.encoder(batch).sum()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.encoder.parameters(), lr=0.0)
class RecordingEMA(EMATargetUpdate):
    def update_target(self, target, online, momentum):
        self.seen = getattr(self, "seen", []) + [momentum]
        super().update_target(target, online, momentum)


def _fit(tmp_path, max_steps: int, ckpt=None, accumulate: int = 1):
    ema = RecordingEMA(max_steps=4)
    trainer = Trainer(max_steps=max_steps, accumulate_grad_batches=accumulate, callbacks=[ema], logger=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    model = EMAToy()
    trainer.fit(model, ckpt_path=ckpt)
    return trainer, model, ema


@pytest.mark.slow
def test_ema_callback_updates_once_per_optimizer_step_as_the_equation_says(tmp_path):
    _, model, ema = _fit(tmp_path, 3, accumulate=2)
    assert ema.seen == [ema_momentum(k, 4) for k in range(3)]  # 6 micro-batches, 3 updates
    keep = math.prod(ema.seen)  # theta_t = 1 - prod(m_k) (1 - 0) with the online weights fixed at 1
    assert torch.allclose(model.target_encoder.weight, torch.full((2, 2), 1.0 - keep))
    assert all(p.grad is None for p in model.target_encoder.parameters())


@pytest.mark.slow
def test_ema_momentum_continues_exactly_after_resume(tmp_path):
    trainer, _, _ = _fit(tmp_path / "a", 2)
    ckpt = tmp_path / "two.ckpt"
    trainer.save_checkpoint(ckpt)
    _, resumed, ema = _fit(tmp_path / "b", 4, ckpt=str(ckpt))
    _, straight, _ = _fit(tmp_path / "c", 4)
    assert ema.seen == [ema_momentum(2, 4), ema_momentum(3, 4)]
    assert torch.allclose(resumed.target_encoder.weight, straight.target_encoder.weight)


def test_ema_callback_refuses_a_trainable_target(tmp_path):
    model = EMAToy()
    model.target_encoder.requires_grad_(True)
    trainer = Trainer(max_steps=1, callbacks=[EMATargetUpdate()], logger=False, enable_progress_bar=False,
                      default_root_dir=tmp_path)
    with pytest.raises(EmberConfigError, match="requires_grad_"):
        trainer.fit(model)


# ---- a JEPA nested inside the LightningModule (an AudioJEPA in EmberModel's sensory slot) ----------------------
def tiny_jepa() -> AudioJEPA:
    return AudioJEPA(SpikingAudioEncoder(**TINY), predictor_width=32, predictor_depth=1, mask_blocks=2, block_len=3)


class NestedJEPA(LightningModule):
    """A wrapper holding an AudioJEPA as `sensory`; SGD with lr 0 keeps the online encoder fixed."""

    def __init__(self, *extra: str):
        super().__init__()
        self.sensory = tiny_jepa()
        for name in extra:  # more JEPAs, to make the search ambiguous
            setattr(self, name, tiny_jepa())

    def training_step(self, batch, batch_idx):
        return self.sensory(batch).tokens.sum()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(4, 1600), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.sensory.encoder.parameters(), lr=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("part", [None, "sensory"])
def test_ema_callback_moves_a_nested_jepa_target_as_the_equation_says(tmp_path, part):
    model = NestedJEPA()
    with torch.no_grad():
        for p in model.sensory.target_encoder.parameters():
            p.copy_(torch.randn_like(p))
    online = [p.clone() for p in model.sensory.encoder.parameters()]
    before = [p.clone() for p in model.sensory.target_encoder.parameters()]
    ema = RecordingEMA(max_steps=4, part=part)
    Trainer(max_steps=2, callbacks=[ema], logger=False, enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False, default_root_dir=tmp_path).fit(model)
    assert ema.seen == [ema_momentum(0, 4), ema_momentum(1, 4)]
    m0, m1 = ema.seen  # theta_t <- m1 (m0 theta_t + (1 - m0) theta_o) + (1 - m1) theta_o, theta_o fixed
    for theta_t, t0, theta_o in zip(model.sensory.target_encoder.parameters(), before, online):
        assert torch.allclose(theta_t, m1 * (m0 * t0 + (1 - m0) * theta_o) + (1 - m1) * theta_o)
    assert all(torch.equal(p, o) for p, o in zip(model.sensory.encoder.parameters(), online))


def test_ema_callback_finds_the_nested_jepa_or_the_top_level_pair():
    assert EMATargetUpdate().locate(NestedJEPA()) == "sensory"
    assert EMATargetUpdate(part="sensory").locate(NestedJEPA()) == "sensory"
    assert EMATargetUpdate().locate(EMAToy()) == ""


def test_ema_callback_without_a_pair_names_the_fix():
    with pytest.raises(EmberConfigError, match=r"no module of Linear holds both `encoder` and `target_encoder`: "
                                               r"set EMATargetUpdate's part .* or remove the callback"):
        EMATargetUpdate().locate(nn.Linear(2, 2))


def test_ema_callback_with_several_pairs_asks_for_part():
    with pytest.raises(EmberConfigError, match=r"several modules of NestedJEPA .* \(sensory, second\): set "
                                               r"EMATargetUpdate's part"):
        EMATargetUpdate().locate(NestedJEPA("second"))
    assert EMATargetUpdate(part="second").locate(NestedJEPA("second")) == "second"


def test_ema_callback_with_a_bad_part_lists_the_top_level_modules():
    with pytest.raises(EmberConfigError, match=r"part='sensory.jepa' is not a module of NestedJEPA \(its top-level "
                                               r"modules: sensory\)"):
        EMATargetUpdate(part="sensory.jepa").locate(NestedJEPA())
    with pytest.raises(EmberConfigError, match=r"NestedJEPA.sensory.encoder does not hold both modules"):
        EMATargetUpdate(part="sensory.encoder").locate(NestedJEPA())
