"""The binding test of issue #5: data, the sensory prefix in EmberModel, the baseline and the pretrained encoder."""

import numpy as np
import pytest
import torch

from ember.data_modules.binding import BindingData, BindingTask
from ember.data_modules.prosody_tasks import TASKS
from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.model import EmberModel
from ember.plugins.backbone.nml import NMLBackbone
from ember.plugins.sensory.encoder import RateAudioEncoder, SpikingAudioEncoder
from ember.plugins.sensory.jepa import AudioJEPA
from ember.plugins.sensory.mel_baseline import MelBaselineEncoder
from ember.plugins.sensory.pretrained import PretrainedAudioEncoder
from helpers import ROOT, ToySensory, fit_args, load_script, mlflow_rows, run_cli

SMALL = dict(d_model=32, depth=1, heads=4, bands=16, patch=4, channels=4)


def backbone() -> NMLBackbone:
    return NMLBackbone(d_model=32, layers_per_block=2, heads=4, window=16)


def data(**kwargs) -> BindingData:
    return BindingData(**{"train_size": 16, "val_size": 16, "test_size": 16, "seconds": 0.3, "batch_size": 4,
                          **kwargs})


# ---- data ------------------------------------------------------------------------------------
def test_examples_are_deterministic_and_splits_differ():
    a, b = data().dataset("val"), data().dataset("val")
    for key in ("tokens", "signal", "label"):
        assert torch.equal(a[3][key], b[3][key])
    assert not torch.equal(a[3]["signal"], data().dataset("test")[3]["signal"])
    assert not torch.equal(a[3]["signal"], data(seed=1).dataset("val")[3]["signal"])


def test_noise_keeps_the_example_and_adds_pink_noise_at_the_drawn_snr():
    clean, noisy = data().dataset("val")[5], data(snr_db=(6.0, 6.0)).dataset("val")[5]
    assert torch.equal(clean["tokens"], noisy["tokens"]) and clean["label"] == noisy["label"]
    noise = (noisy["signal"] - clean["signal"]).double()
    snr = 10 * torch.log10(clean["signal"].double().pow(2).mean() / noise.pow(2).mean())
    assert abs(snr.item() - 6.0) < 1e-3  # float32 rounding of the sum
    spectrum = torch.fft.rfft(noise).abs().pow(2)
    low, high = spectrum[1:len(spectrum) // 8].mean(), spectrum[len(spectrum) // 2:].mean()
    assert low > 5 * high  # pink: most power at low frequencies
    assert torch.equal(noisy["signal"], data(snr_db=(6.0, 6.0)).dataset("val")[5]["signal"])  # deterministic


@pytest.mark.parametrize("snr_db", [(20.0, 0.0), (float("nan"), 3.0), (1.0, 2.0, 3.0)])
def test_a_bad_snr_range_is_refused_by_name(snr_db):
    with pytest.raises(EmberConfigError, match="snr_db"):
        data(snr_db=snr_db)


def test_the_text_before_the_answer_is_the_same_for_every_class():
    dataset = data(tasks=("arousal", "question", "confidence"), val_size=64).dataset("val")
    prompts: dict[tuple[str, int], set[bytes]] = {}
    for item in dataset:
        task = dataset.task.group_names[int(item["group"].max())]
        first = int(item["loss_mask"].nonzero()[0])  # target position of the first answer byte
        prompts.setdefault((task, int(item["label"])), set()).add(bytes(item["tokens"][: first + 1].tolist()))
    assert set(prompts) == {(t, c) for t in TASKS for c in (0, 1)}  # every class of every task occurs
    for task in TASKS:
        assert prompts[(task, 0)] == prompts[(task, 1)] == {BindingTask.prompt(task)}


def test_only_the_answer_is_scored_and_chance_is_one_half():
    dm = data()
    item = dm.dataset("train")[0]
    scored = bytes(item["tokens"][1:][item["loss_mask"]].tolist())
    assert scored == TASKS["arousal"].classes[int(item["label"])].encode()
    assert dm.chance == 0.5 and dm.eval_task.name == "binding" and dm.eval_task.group_names == ["arousal"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["signal"].shape == (4, 4800) and batch["signal"].dtype == torch.float32
    assert batch["tokens"].shape[1] == batch["loss_mask"].shape[1] + 1


def test_label_fraction_keeps_that_share_of_the_training_examples():
    assert len(data(train_size=1000, label_fraction=0.01).dataset("train")) == 10
    assert len(data(train_size=1000, label_fraction=0.01).dataset("val")) == 16
    with pytest.raises(EmberConfigError, match="fewer than batch_size=4"):
        data(train_size=100, label_fraction=0.01)
    with pytest.raises(EmberConfigError, match=r"label_fraction=0 must be in \(0, 1\]"):
        data(label_fraction=0)
    with pytest.raises(EmberConfigError, match="tasks="):
        data(tasks=("pitch",))


# ---- the sensory prefix in EmberModel ----------------------------------------------------------
def test_text_only_model_cannot_see_the_class():
    """Without a sensory slot the signal is ignored: two classes, same tokens -> the same logits."""
    torch.manual_seed(0)
    model = EmberModel(backbone())
    batch = next(iter(data().val_dataloader()))
    tokens = batch["tokens"][:1, :-1]
    other = torch.randn_like(batch["signal"][:1])
    torch.testing.assert_close(model(tokens, signal=batch["signal"][:1]).logits, model(tokens, signal=other).logits)


def test_a_sensory_slot_changes_the_logits_and_text_batches_train_as_before():
    torch.manual_seed(0)
    plain = EmberModel(backbone())
    sensed = EmberModel(backbone(), sensory=ToySensory())
    sensed.backbone.load_state_dict(plain.backbone.state_dict())
    tokens, signal = torch.randint(0, 256, (2, 30)), torch.randn(2, 64)
    assert not torch.allclose(sensed(tokens, signal=signal).logits, sensed(tokens, signal=-signal).logits)
    text = plain.evaluate({"tokens": tokens})[0]
    torch.testing.assert_close(sensed.evaluate({"tokens": tokens})[0], text)
    torch.testing.assert_close(sensed.evaluate(tokens)[0], text)
    assert not torch.allclose(sensed.evaluate({"tokens": tokens, "signal": signal})[0], text)


def test_the_prefix_goes_to_the_first_chunk_only_and_tbptt_matches_one_chunk():
    torch.manual_seed(0)
    whole = EmberModel(backbone(), sensory=ToySensory())
    chunked = EmberModel(backbone(), sensory=ToySensory(), tbptt_chunk=7)
    chunked.load_state_dict(whole.state_dict())
    batch = {"tokens": torch.randint(0, 256, (2, 30)), "signal": torch.randn(2, 64)}
    calls = []
    chunked.sensory.register_forward_hook(lambda *_: calls.append(1))
    torch.testing.assert_close(chunked.evaluate(batch)[0],
                               whole.evaluate(batch)[0])
    assert len(calls) == 1  # encoded once per sequence, not per chunk


# ---- encoders ----------------------------------------------------------------------------------
def test_mel_baseline_has_no_neurons_and_the_encoders_shapes():
    signal = torch.randn(2, 4000)
    mel = MelBaselineEncoder(**SMALL)
    tokens, modulation = mel(signal)
    assert tokens.shape == (2, 6, 32) and modulation.shape == (2, 3)
    assert torch.isnan(mel.spike_rate())  # no spikes, no leaky neurons
    spiking = SpikingAudioEncoder(**SMALL)
    spiking(signal)
    assert 0 <= float(spiking.spike_rate()) <= 1


def _jepa_checkpoint(path, encoder) -> str:
    jepa = AudioJEPA(encoder, predictor_width=16, predictor_depth=1)
    checkpoint = {"state_dict": jepa.state_dict()}
    jepa.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return str(path)


def test_pretrained_encoder_loads_the_jepa_weights_and_can_be_frozen(tmp_path):
    torch.manual_seed(0)
    source = SpikingAudioEncoder(**SMALL)
    path = _jepa_checkpoint(tmp_path / "jepa.ckpt", source)
    wrapped = PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=path, freeze=True)
    for (k, v), (k2, v2) in zip(source.state_dict().items(), wrapped.encoder.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.modulation_head.weight", "encoder.modulation_head.bias"}
    signal = torch.randn(2, 4000)
    torch.testing.assert_close(wrapped(signal).tokens, source(signal).tokens)
    assert not wrapped(signal).tokens.requires_grad


def test_pretrained_encoder_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    with pytest.raises(EmberConfigError, match="does not exist: pre-train the encoder first"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=str(tmp_path / "missing.ckpt"))
    composite = tmp_path / "composite.ckpt"
    torch.save({"state_dict": EmberModel(backbone(), sensory=SpikingAudioEncoder(**SMALL)).state_dict()}, composite)
    with pytest.raises(CheckpointMismatchError, match="holds no encoder.. weights.*not an AudioJEPA checkpoint"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=str(composite))
    wider = _jepa_checkpoint(tmp_path / "wide.ckpt", SpikingAudioEncoder(**{**SMALL, "channels": 8}))
    with pytest.raises(CheckpointMismatchError, match="does not fit this SpikingAudioEncoder.*sizes it was pre-"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=wider)
    rate = _jepa_checkpoint(tmp_path / "rate.ckpt", RateAudioEncoder(**SMALL))
    with pytest.raises(CheckpointMismatchError, match="pre-trained with a RateAudioEncoder.*set encoder.class_path"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), checkpoint=rate)
    with pytest.raises(EmberConfigError, match="freeze=true without a checkpoint"):
        PretrainedAudioEncoder(SpikingAudioEncoder(**SMALL), freeze=True)


# ---- the debug config ----------------------------------------------------------------------------
def test_debug_config_fits_and_logs_the_answer_accuracy_and_spike_rate(tmp_path):
    config = str(ROOT / "configs/debug/binding.yaml")
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "3", config=config)) == 0
    keys = {k for (k,) in mlflow_rows(tmp_path, "select distinct key from metrics")}
    assert {"train/loss", "val/binding/acc", "val/binding/acc/arousal", "sensory/spike_rate",
            "val/spike_rate"} <= keys
    assert np.isfinite([v for (v,) in mlflow_rows(tmp_path, "select value from metrics where key='val/loss'")]).all()


# ---- the linear probe (benchmarks/analysis/probe.py) -----------------------------------------------
def test_probe_logistic_regression_separates_what_is_separable_and_not_noise():
    probe = load_script("benchmarks/analysis/probe.py")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g, dtype=torch.float64)
    y = (x[:, 2] - 0.5 * x[:, 4] > 0).long()
    w = probe.fit_logistic(x, y, 2, 1e-3)
    x_new = torch.randn(400, 6, generator=g, dtype=torch.float64)
    assert (probe.predict(w, x_new) == (x_new[:, 2] - 0.5 * x_new[:, 4] > 0).long()).double().mean() > 0.9
    noise = torch.randint(0, 2, (400,), generator=g)
    w = probe.fit_logistic(x, torch.randint(0, 2, (80,), generator=g), 2, probe.choose_penalty(x, y, 2))
    assert abs((probe.predict(w, x_new) == noise).double().mean().item() - 0.5) < 0.1
    assert probe.choose_penalty(x, y, 2) in probe.PENALTIES


def test_probe_script_scores_the_debug_binding_config_and_refuses_two_tasks(capsys):
    probe = load_script("benchmarks/analysis/probe.py")
    args = ["--config", str(ROOT / "configs/debug/binding.yaml"), "--data.init_args.tasks=[question]",
            "--data.init_args.train_size=20", "--data.init_args.test_size=12", "--data.init_args.seconds=0.3"]
    assert probe.main([*args, "--seeds", "0,1", "--segments", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["0", "1", "mean"]
    assert lines[1].split("|")[2:4] == [" 20 ", " 12 "]
    accs = [float(line.split("|")[5].strip().strip("*")) for line in lines[1:]]
    assert all(0 <= a <= 1 for a in accs) and accs[2] == pytest.approx((accs[0] + accs[1]) / 2, abs=1e-3)
    assert probe.main([*args, "--config", str(ROOT / "configs/ablate/binding_mel.yaml")]) == 0  # an overlay merges
    assert "| 0 | 20 | 12 |" in capsys.readouterr().out
    assert probe.main([*args, "--data.init_args.tasks=[question,arousal]"]) == 2
    assert "reads one prosody task" in capsys.readouterr().err
    assert probe.main([*args, "--segments", "500"]) == 2
    assert "lower --segments" in capsys.readouterr().err


def test_build_cli_merges_overlays_in_order_as_ember_fit_does():
    from ember.cli.runs import build_cli

    base, mel = str(ROOT / "configs/debug/binding.yaml"), str(ROOT / "configs/ablate/binding_mel.yaml")
    assert isinstance(build_cli(base).model.sensory.encoder, SpikingAudioEncoder)
    assert isinstance(build_cli([base, mel]).model.sensory.encoder, MelBaselineEncoder)
