"""`ember plugins`: every kind listed, `show` prints options, an unknown name gets a suggestion."""

from ember.cli.main import main


def test_every_kind_is_listed_with_descriptions(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in ("sensory:", "reasoning:", "backbone:", "procedural_memory:", "episodic_memory:",
                 "neuromodulator:", "consolidator:", "data:"):
        assert kind in out
    assert "NMLBackbone" in out and "Neural Memory Layers" in out
    assert "TransformerBackbone" in out and "TextBytes" in out


def test_show_prints_options_defaults_and_help(capsys):
    assert main(["plugins", "show", "NMLBackbone"]) == 0
    out = capsys.readouterr().out
    assert "ember.plugins.backbone.nml.NMLBackbone" in out
    assert "--window" in out and "default: 256" in out and "working-memory window" in out


def test_show_unknown_name_suggests(caplog):
    assert main(["plugins", "show", "TransformerBackbon"]) == 2
    assert "did you mean TransformerBackbone" in caplog.text
