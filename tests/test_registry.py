"""ember.registry: a plugin that fails to import is named and the rest work; short names are unique."""

import importlib.metadata

import pytest

from ember import registry
from ember.cli.main import main
from ember.errors import EmberConfigError


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


@pytest.mark.slow
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
