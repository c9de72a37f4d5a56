import importlib.metadata

import pytest

from ember import registry
from ember.cli.main import main
from ember.errors import EmberConfigError


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


class _BrokenEntryPoint:
    name, value, group = "broken_plugin", "not_a_module_anywhere:Thing", registry.ENTRY_POINT_GROUP

    def load(self):
        raise ImportError("No module named 'not_a_module_anywhere'")


def test_a_plugin_that_fails_to_import_is_named_and_the_rest_work(monkeypatch, capsys, caplog):
    real = importlib.metadata.entry_points

    def fake(**kwargs):
        return [_BrokenEntryPoint()] if kwargs.get("group") == registry.ENTRY_POINT_GROUP else real(**kwargs)

    monkeypatch.setattr(registry, "entry_points", fake)
    try:
        failures = registry.load_plugins(force=True)
        assert "broken_plugin" in failures and "not_a_module_anywhere" in caplog.text
        assert "NMLBackbone" in registry.plugins()
        assert main(["plugins"]) == 0
        assert "failed to import: broken_plugin" in capsys.readouterr().out
    finally:
        monkeypatch.undo()
        registry.load_plugins(force=True)


def test_duplicate_short_names_are_an_error():
    from ember.base import LanguageBackbone

    def make():
        class NMLBackbone(LanguageBackbone):  # same short name as the built-in
            """A clash."""

            def forward(self, tokens, state=None, prefix=None):
                raise NotImplementedError

        return NMLBackbone

    clash = make()
    try:
        with pytest.raises(EmberConfigError, match="two plugins are named 'NMLBackbone'"):
            registry.plugins()
    finally:
        del clash
        import gc

        gc.collect()
    registry.plugins()  # the clash is gone with its class
