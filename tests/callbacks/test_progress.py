"""EmberProgressBar: `ember fit`'s bar shows loss, bits/byte, tokens/s and lr, and no v_num; it stays out of the way
when the bar is switched off."""

import pytest

from helpers import fit_args, run_cli


@pytest.mark.slow
def test_the_bar_has_no_v_num_and_the_bar_can_still_be_switched_off(tmp_path, capsys):
    assert run_cli(*fit_args(tmp_path / "on", "--trainer.max_steps", "2")) == 0
    shown = capsys.readouterr()
    bar = shown.out + shown.err
    assert "train/tok_s" in bar and "train/lr" in bar and "v_num" not in bar
    assert run_cli(*fit_args(tmp_path / "off", "--trainer.max_steps", "2", "--trainer.enable_progress_bar",
                             "false")) == 0
