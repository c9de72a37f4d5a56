"""BindingData, the binding test of issue #5: deterministic examples, noise, what is scored, label fraction,
and the debug config end to end."""

import numpy as np
import pytest
import torch

from ember.data_modules.binding import BindingTask
from ember.data_modules.prosody_tasks import TASKS
from ember.errors import EmberConfigError
from helpers import ROOT, fit_args, mlflow_rows, run_cli
from helpers import binding_data as data


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


@pytest.mark.slow
def test_debug_config_fits_and_logs_the_answer_accuracy_and_spike_rate(tmp_path):
    config = str(ROOT / "configs/debug/binding.yaml")
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "3", config=config)) == 0
    keys = {k for (k,) in mlflow_rows(tmp_path, "select distinct key from metrics")}
    assert {"train/loss", "val/binding/acc", "val/binding/acc/arousal", "sensory/spike_rate",
            "val/spike_rate"} <= keys
    assert np.isfinite([v for (v,) in mlflow_rows(tmp_path, "select value from metrics where key='val/loss'")]).all()
