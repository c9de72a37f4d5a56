"""The composite task (issue 32): its examples, its groups, and the full composite fitting on it from YAML."""

import numpy as np
import pytest
import torch

from ember.data_modules.composite import BASE_HZ, CompositeData, CompositeTask
from ember.errors import EmberConfigError
from helpers import ROOT, fit_args, load_script, run_cli, run_folder


def test_an_example_asks_a_tone_question_and_a_recall_question_with_their_groups():
    task = CompositeTask(window=16, delay=1, people=2, seq_len=200, snr_db=None)
    for i in range(8):
        item = task.sample(np.random.default_rng(i), "test")
        text = bytes(item["tokens"].tolist())
        groups = item["group"][item["loss_mask"]].unique().tolist()
        answer = bytes(item["tokens"][1:][item["loss_mask"]].tolist()).decode()
        assert len(groups) == 2 and groups[0] in (0, 1) and groups[1] == (3 if item["alarmed"] else 2)
        assert text.startswith(b"first tone? " if groups[0] == 0 else b"tone sum? ")
        code = answer[1:]
        assert f"'s code is {code}.".encode() in text  # the asked code was said in the session
        assert item["signal"].shape == (16000,)


def test_the_tone_of_a_window_is_its_digits_pitch():
    task = CompositeTask(windows=2, view_seconds=0.5, digits=4, window=16, delay=0, seq_len=200, snr_db=None)
    for i in range(6):
        rng = np.random.default_rng(i)
        item = task.sample(np.random.default_rng(i), "train")
        digits = rng.integers(4, size=2)  # the first draw of sample()
        for w, digit in enumerate(digits):
            part = item["signal"][w * 8000:(w + 1) * 8000].numpy()
            spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part)), n=64000))  # 0.25 Hz bins, little leakage
            peak = np.argmax(spectrum[:4000]) * 16000 / 64000  # Hz: the strongest partial is the fundamental
            assert abs(peak - BASE_HZ * 2 ** (4 * digit / 12)) < 6


def test_train_and_test_draw_disjoint_codes():
    task = CompositeTask(window=16, delay=0, people=1, seq_len=200)
    codes = {split: {bytes(t["tokens"][1:][t["loss_mask"] & (t["group"] >= 2)].tolist())
                     for t in (task.sample(np.random.default_rng([s, i]), split) for i in range(64))}
             for s, split in enumerate(("train", "test"))}
    assert not codes["train"] & codes["test"]


def test_bad_settings_name_the_fix():
    with pytest.raises(EmberConfigError, match="windows=1 must be >= 2"):
        CompositeTask(windows=1)
    with pytest.raises(EmberConfigError, match="raise seq_len to"):
        CompositeTask(seq_len=64)
    with pytest.raises(EmberConfigError, match="smaller than batch_size"):
        CompositeData(train_size=2, batch_size=4)


@pytest.mark.slow
def test_the_debug_composite_fits_from_yaml_with_every_part(tmp_path):
    """TinyRecursiveCore in the composite from YAML (it crashed: issue 32), with sensory, PM, EM, learned
    neuromodulators reading the modulation and two rounds of sensing."""
    config = str(ROOT / "configs/debug/composite.yaml")
    assert run_cli(*fit_args(tmp_path / "runs", "--trainer.max_steps", "2", config=config)) == 0
    run = run_folder(tmp_path / "runs")
    state = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    slots = state["ember"]["slots"]
    assert slots["sensory"] == "SpikingAudioEncoder" and slots["reasoning"] == "TinyRecursiveCore"
    assert state["hyper_parameters"]["view_seconds"] == 0.5  # max_rounds is not saved: settable at test time
    # the analysis script reads the run: rounds 1..2, every round, modulation off
    table = tmp_path / "table.md"
    assert load_script("benchmarks/analysis/composite.py").main(
        ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/last.ckpt"), "--limit", "2",
         "--out", str(table)]) == 0
    rows = table.read_text().splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| max_rounds 1, learned flag", "| max_rounds 2, learned flag", "| max_rounds 2, every round",
        "| max_rounds 2, modulation off at test"]
    assert set(rows[2].split(" | ")[5:7]) <= {"2.00", "nan"} and "2.00" in rows[2]  # every round taken
