"""ember.cli.runs: a run's config with its overlays, as `ember fit` merges them."""

from ember.plugins.sensory.encoder import SpikingAudioEncoder
from ember.plugins.sensory.mel_baseline import MelBaselineEncoder
from helpers import ROOT


def test_build_cli_merges_overlays_in_order_as_ember_fit_does():
    from ember.cli.runs import build_cli

    base, mel = str(ROOT / "configs/debug/binding.yaml"), str(ROOT / "configs/ablate/binding_mel.yaml")
    assert isinstance(build_cli(base).model.sensory.encoder, SpikingAudioEncoder)
    assert isinstance(build_cli([base, mel]).model.sensory.encoder, MelBaselineEncoder)
