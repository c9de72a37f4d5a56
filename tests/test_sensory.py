"""Sensory L-module (SPEC 3.4): filterbank, LIF neurons, audio encoders, JEPA, EMA target, prosody data."""

import logging
import math
import shutil

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn

from ember.base import SensoryOutput
from ember.callbacks.ema_target import EMATargetUpdate, ema_momentum
from ember.data_modules.audio import check_audio, decode_wav, encode_wav, resample
from ember.data_modules.audio_shards import prepare_prosody_shards, read_audio_split
from ember.data_modules.prosody import ProsodyData
from ember.data_modules.prosody_tasks import TASKS, make_example
from ember.errors import EmberConfigError, EmberDataError
from ember.ops.filterbank import MelFilterbank
from ember.ops.jepa import block_mask, embedding_spread
from ember.ops.lif import LIFNeuron, RateNeuron, leaky_integrate, spike
from ember.plugins.sensory.encoder import RateAudioEncoder, SpikingAudioEncoder
from ember.plugins.sensory.jepa import AudioJEPA
from helpers import ROOT, fit_args, mlflow_rows, run_cli

SR = 16000
TINY = dict(d_model=32, depth=1, heads=4, bands=32, patch=4, channels=8)


def tone(freq: float, seconds: float = 1.0, rate: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


# ---- filterbank ------------------------------------------------------------------------------
def test_filterbank_frames_every_10ms_and_learns_nothing():
    fb = MelFilterbank(bands=40)
    out = fb(torch.randn(2, SR))
    assert fb.hop == 160 and fb.n_fft == 400
    assert out.shape == (2, 101, 40) == (2, fb.frames(SR), 40)
    assert list(fb.parameters()) == [] and fb.state_dict() == {}


def test_filterbank_puts_a_tone_in_its_band_and_silence_at_the_floor():
    fb = MelFilterbank(bands=40)
    out = fb(torch.from_numpy(np.stack([tone(1000.0), np.zeros(SR, np.float32)])))
    centres = (fb.weights * torch.linspace(0, SR / 2, fb.n_fft // 2 + 1)).sum(1) / fb.weights.sum(1)
    assert abs(centres[out[0].mean(0).argmax()] - 1000.0) < 150.0
    assert torch.allclose(out[1], torch.full_like(out[1], math.log(fb.eps)))


# ---- LIF -------------------------------------------------------------------------------------
def test_lif_membrane_and_spikes_by_hand():
    # beta 0.5, theta 1, constant input 0.6:
    # v1 = 0.6; v2 = 0.3 + 0.6 = 0.9; v3 = 0.45 + 0.6 = 1.05 -> spike; v4 = 0.525 + 0.6 - 1 = 0.125
    x = torch.full((1, 4, 1), 0.6, dtype=torch.float64)
    s, v = leaky_integrate(x, torch.tensor([0.5], dtype=torch.float64), 1.0, spike)
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0]
    assert v.item() == pytest.approx(0.125)
    s3, v3 = leaky_integrate(x[:, :3], torch.tensor([0.5], dtype=torch.float64), 1.0, spike)
    assert v3.item() == pytest.approx(1.05) and s3[0, -1, 0] == 1.0


def test_surrogate_gradient_is_the_fast_sigmoid():
    u = torch.tensor([-0.5, 0.0, 0.2], requires_grad=True)
    spike(u, slope=5.0).sum().backward()
    assert torch.allclose(u.grad, 1.0 / (1.0 + 5.0 * u.detach().abs()) ** 2)
    neuron = LIFNeuron(3, beta=0.9)
    x = torch.rand(2, 6, 3, requires_grad=True)
    neuron(x * 2).sum().backward()
    assert x.grad.abs().sum() > 0 and neuron.beta_logit.grad.abs().sum() > 0


def test_rate_neuron_is_the_same_size_and_continuous():
    lif, rate = LIFNeuron(4), RateNeuron(4)
    x = torch.rand(2, 5, 4) * 2
    assert set(lif(x).unique().tolist()) <= {0.0, 1.0}
    assert sum(p.numel() for p in lif.parameters()) == sum(p.numel() for p in rate.parameters())
    assert 0 < rate(x).min() and rate(x).max() < 1


# ---- encoders --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SpikingAudioEncoder, RateAudioEncoder])
def test_encoder_outputs_tokens_and_modulation(cls):
    enc = cls(**TINY)
    out = enc(torch.randn(3, SR) * 0.1)
    assert isinstance(out, SensoryOutput)
    assert out.tokens.shape == (3, 101 // 4, 32)
    assert out.modulation.shape == (3, 3)
    arousal, valence, threat = out.modulation.unbind(-1)
    assert (0 <= arousal).all() and (arousal <= 1).all() and (valence.abs() <= 1).all() and (threat >= 0).all()
    assert 0.0 <= float(enc.spike_rate()) <= 1.0


def test_spiking_and_rate_encoders_have_the_same_parameter_count():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(SpikingAudioEncoder(**TINY)) == count(RateAudioEncoder(**TINY))


def test_encoder_validates_its_shapes():
    with pytest.raises(EmberConfigError, match="divisible"):
        SpikingAudioEncoder(d_model=30, heads=4)
    with pytest.raises(EmberDataError, match="batch, samples"):
        SpikingAudioEncoder(**TINY)(torch.randn(2, 2, SR))


# ---- JEPA ------------------------------------------------------------------------------------
def tiny_jepa(**kwargs) -> AudioJEPA:
    return AudioJEPA(SpikingAudioEncoder(**TINY), predictor_width=32, predictor_depth=1, mask_blocks=2, block_len=3,
                     warmup_steps=0, **kwargs)


def test_block_mask_splits_every_patch_once():
    ctx, tgt = block_mask(25, 3, 4, torch.Generator().manual_seed(0))
    assert sorted(torch.cat((ctx, tgt)).tolist()) == list(range(25)) and 1 <= len(tgt) <= 12
    with pytest.raises(EmberDataError, match="block_len"):
        block_mask(4, 1, 4)


def test_jepa_target_is_frozen_and_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny_jepa()
    signal = torch.from_numpy(np.stack([make_example(np.random.default_rng(i), seconds=1.0).signal
                                        for i in range(4)]))
    assert all(not p.requires_grad for p in model.target_encoder.parameters())
    optimizer = model.configure_optimizers()["optimizer"]
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not trained & {id(p) for p in model.target_encoder.parameters()}
    before = [p.clone() for p in model.target_encoder.parameters()]
    losses = []
    for _ in range(12):
        loss, targets = model.jepa_step(signal, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert all(p.grad is None and torch.equal(p, b) for p, b in zip(model.target_encoder.parameters(), before))
    assert embedding_spread(targets) > 0.1
    assert model(signal).tokens.shape == (4, 25, 32)


def test_collapse_is_measured_and_flagged(caplog):
    assert embedding_spread(torch.ones(2, 5, 8) + torch.arange(8.0)) == pytest.approx(0.0, abs=1e-6)
    assert embedding_spread(torch.randn(4, 16, 32)) > 0.8
    model = tiny_jepa(collapse_threshold=0.1)
    with caplog.at_level(logging.WARNING):
        assert model._flag_collapse(0.01) and model._flag_collapse(0.02)
        assert not model._flag_collapse(0.5)
    assert caplog.text.count("representation collapse") == 1


# ---- EMA target ------------------------------------------------------------------------------
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


def test_ema_callback_updates_once_per_optimizer_step_as_the_equation_says(tmp_path):
    _, model, ema = _fit(tmp_path, 3, accumulate=2)
    assert ema.seen == [ema_momentum(k, 4) for k in range(3)]  # 6 micro-batches, 3 updates
    keep = math.prod(ema.seen)  # theta_t = 1 - prod(m_k) (1 - 0) with the online weights fixed at 1
    assert torch.allclose(model.target_encoder.weight, torch.full((2, 2), 1.0 - keep))
    assert all(p.grad is None for p in model.target_encoder.parameters())


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


# ---- prosody synthesizer ---------------------------------------------------------------------
def f0_estimate(x: np.ndarray, rate: int = SR) -> float:
    """Autocorrelation pitch of a voiced stretch, searched in 70-500 Hz."""
    x = x - x.mean()
    ac = np.correlate(x, x, "full")[len(x) - 1 :]
    lo, hi = rate // 500, rate // 70
    return rate / (lo + int(np.argmax(ac[lo:hi])))


def voiced_span(x: np.ndarray) -> tuple[int, int]:
    energy = np.convolve(x**2, np.ones(320) / 320, "same")
    loud = np.flatnonzero(energy > 0.1 * energy.max())
    return int(loud[0]), int(loud[-1])


def test_synthesizer_is_deterministic_from_its_seed():
    a = make_example(np.random.default_rng([1, 2, 3]))
    b = make_example(np.random.default_rng([1, 2, 3]))
    c = make_example(np.random.default_rng([1, 2, 4]))
    assert np.array_equal(a.signal, b.signal) and a.label == b.label and a.task == b.task
    assert not np.array_equal(a.signal, c.signal)
    assert a.signal.dtype == np.float32 and a.signal.shape == (24000,) and np.abs(a.signal).max() <= 1.0


def _by_class(task: str, n: int = 12) -> dict[int, list[np.ndarray]]:
    out = {0: [], 1: []}
    for i in range(n):
        e = make_example(np.random.default_rng([7, i]), task)
        out[e.label].append(e.signal)
    return out


def test_classes_differ_only_in_the_sound():
    assert len({t.text for t in TASKS.values()}) == 3  # one transcript per task, shared by its classes
    q = _by_class("question")
    end_rise = lambda x: f0_estimate(x[voiced_span(x)[1] - 1200 : voiced_span(x)[1] - 200]) / f0_estimate(  # noqa
        x[voiced_span(x)[0] + 800 : voiced_span(x)[0] + 1800])
    assert min(end_rise(x) for x in q[1]) > max(end_rise(x) for x in q[0])
    a = _by_class("arousal")
    rms = lambda x: float(np.sqrt(np.mean(x[slice(*voiced_span(x))] ** 2)))  # noqa: E731
    assert np.mean([rms(x) for x in a[1]]) > 1.5 * np.mean([rms(x) for x in a[0]])
    c = _by_class("confidence")
    assert np.mean([voiced_span(x)[0] for x in c[0]]) > np.mean([voiced_span(x)[0] for x in c[1]]) + 0.1 * SR


# ---- bad audio -------------------------------------------------------------------------------
def test_bad_audio_is_refused_or_flagged(caplog):
    with pytest.raises(EmberDataError, match="NaN"):
        check_audio(np.array([0.1, np.nan, 0.2], np.float32), SR)
    with pytest.raises(EmberDataError, match="silent"):
        check_audio(np.zeros(SR, np.float32), SR)
    with pytest.raises(EmberDataError, match="mono"):
        check_audio(np.zeros((2, SR), np.float32), SR)
    with caplog.at_level(logging.WARNING):
        check_audio(np.clip(tone(200, amp=2.0), -1, 1), SR)
    assert "clipped" in caplog.text
    with pytest.raises(EmberDataError, match="not a PCM WAV"):
        decode_wav(b"ID3 this is an mp3, honest", "song.mp3")


def test_other_sample_rates_are_resampled_or_refused():
    x = tone(440.0, rate=22050)
    with pytest.raises(EmberDataError, match="22050 Hz"):
        check_audio(x, 22050, SR, allow_resample=False)
    y = check_audio(x, 22050, SR)
    assert len(y) == SR and abs(f0_estimate(y[:4000]) - 440.0) < 5.0
    assert np.allclose(resample(y, SR, SR), y)
    back, rate = decode_wav(encode_wav(y, SR))
    assert rate == SR and np.abs(back - y).max() < 1e-4


def test_prepare_audio_prosody_writes_shards_the_data_module_reads(tmp_path):
    out = tmp_path / "prosody"
    assert run_cli("data", "prepare", "audio-prosody", "--out", str(out), "--size", "6", "--seed", "3",
                   "--seconds", "1.0") == 0
    again = prepare_prosody_shards(tmp_path / "again", size=6, seed=3, seconds=1.0)
    assert again["train"]["samples"] == 5 and again["val"]["samples"] == 1
    train = read_audio_split(out, "train")
    assert all(np.array_equal(a.signal, b.signal) for a, b in zip(train, read_audio_split(tmp_path / "again", "train")))
    first = make_example(np.random.default_rng([3, 0, 0]), seconds=1.0)
    assert train[0].task == first.task and train[0].label == first.label
    assert np.abs(train[0].signal - first.signal).max() < 1e-4  # 16-bit PCM
    dm = ProsodyData(path=str(out), seconds=1.0, batch_size=2)
    batch = next(iter(dm.train_dataloader()))
    assert batch["signal"].shape == (2, SR) and batch["signal"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and len(batch["task"]) == 2
    with pytest.raises(EmberDataError, match="not empty"):
        prepare_prosody_shards(out, size=6)


def test_stored_audio_that_is_broken_is_named(tmp_path):
    import tarfile

    out = tmp_path / "bad"
    prepare_prosody_shards(out, size=4, seconds=0.5)
    shard = out / "val-000000.tar"
    with tarfile.open(shard, "w") as tar:  # replace the val shard by one whose audio is not audio
        info = tarfile.TarInfo("000000000.wav")
        info.size = 9
        tar.addfile(info, __import__("io").BytesIO(b"not a wav"))
        for name, data in (("000000000.cls", b"0"), ("000000000.task", b"question")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, __import__("io").BytesIO(data))
    with pytest.raises(EmberDataError, match="000000000.*not a PCM WAV"):
        read_audio_split(out, "val")
    text_shards = tmp_path / "text"
    shutil.copytree(out, text_shards)
    (text_shards / "ember-shards.json").write_text('{"format": 1, "train": {"shards": []}, "val": {"shards": []}}')
    with pytest.raises(EmberDataError, match="audio-prosody"):
        read_audio_split(text_shards, "train")


def test_unknown_or_missing_voice_sources_are_refused():
    with pytest.raises(EmberConfigError, match="source='bark' is unknown"):
        ProsodyData(source="bark")
    with pytest.raises(EmberConfigError, match="task='sarcasm' is unknown"):
        ProsodyData(task="sarcasm")
    if shutil.which("espeak-ng") is None:
        with pytest.raises(EmberConfigError, match="apt-get install espeak-ng"):
            ProsodyData(source="espeak")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_ng_audio_passes_the_checks():
    from ember.data_modules.espeak import espeak_utterance

    x = espeak_utterance("you are going home", SR)
    assert check_audio(x, SR).shape == x.shape
    batch = next(iter(ProsodyData(source="espeak", seconds=1.5, batch_size=2, val_size=2).val_dataloader()))
    assert batch["signal"].shape == (2, 24000)


# ---- the debug config ------------------------------------------------------------------------
def test_debug_config_fits_and_logs_the_sensory_metrics(tmp_path):
    config = str(ROOT / "configs/debug/jepa_audio.yaml")
    assert run_cli(*fit_args(tmp_path, config=config)) == 0
    keys = {k for (k,) in mlflow_rows(tmp_path, "select distinct key from metrics")}
    assert {"train/loss", "val/loss", "jepa/collapse_std", "sensory/spike_rate", "jepa/ema_momentum"} <= keys
    momenta = [v for (v,) in mlflow_rows(tmp_path, "select value from metrics where key='jepa/ema_momentum' "
                                                   "order by step")]
    assert momenta[0] == pytest.approx(0.996) and momenta == sorted(momenta)


def test_prosody_noise_is_for_synthesized_audio_and_keeps_the_label(tmp_path):
    with pytest.raises(EmberConfigError, match="snr_db"):
        ProsodyData(path=str(tmp_path), snr_db=(0.0, 10.0))
    clean = ProsodyData(seconds=0.5, val_size=4).dataset("val")[2]
    noisy = ProsodyData(seconds=0.5, val_size=4, snr_db=(0.0, 0.0)).dataset("val")[2]
    assert clean["label"] == noisy["label"] and clean["task"] == noisy["task"]
    noise = (noisy["signal"] - clean["signal"]).double()
    assert abs(10 * torch.log10(clean["signal"].double().pow(2).mean() / noise.pow(2).mean()).item()) < 1e-3
