"""`ember stability`: sessions leave the slow weights and the memory-off bits per byte untouched."""

import pytest

from helpers import run_cli


@pytest.mark.slow
def test_stability_finds_the_slow_weights_and_memory_off_bpb_untouched(trained_runs, tmp_path):
    import json

    config, ckpt = trained_runs["memory"]
    out = tmp_path / "stability.json"
    assert run_cli("stability", "--config", config, "--ckpt_path", ckpt, "--sessions", "3", "--session_bytes", "300",
                   "--heldout_bytes", "200", "--span", "64", "--out", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["weights_unchanged"] and result["bpb_memory_off_change"] == 0.0
    assert len(result["session_bpb"]) == 3 and result["after"]["bpb_memory_on_adapted"] > 0
