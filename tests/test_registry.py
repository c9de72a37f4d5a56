"""ember.registry: a plugin that fails to import is named and the rest work; short names are unique; the list read
from the source (ember.catalog) is the imported registry's."""

import importlib
import importlib.metadata

import pytest

from ember import catalog, registry
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
    monkeypatch.setattr(catalog, "entry_points", fake)
    try:
        failures = registry.load_plugins(force=True)
        assert "broken_plugin" in failures and "not_a_module_anywhere" in caplog.text
        assert "NMLBackbone" in registry.plugins()
        assert main(["plugins"]) == 0  # the list imports nothing: the plugin is listed by its entry point
        out = capsys.readouterr().out
        assert "broken_plugin" in out and "not_a_module_anywhere:Thing  (installed plugin;" in out
        assert main(["plugins", "show", "broken_plugin"]) == 2
        assert "plugin 'broken_plugin' failed to import (ImportError" in caplog.text
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


def _builtins(infos) -> list[tuple[str, str, str, str]]:
    return sorted((i.kind, i.name, i.description, i.class_path) for i in infos
                  if i.class_path.startswith(tuple(p + "." for p in catalog.BUILTIN_PACKAGES)))


def test_the_list_read_from_the_source_is_the_imported_registrys():
    registry.load_plugins()
    assert _builtins(catalog.builtin_plugins().values()) == _builtins(registry.plugins().values())
    elsewhere = [i.class_path for i in registry.plugins().values() if i.class_path.startswith("ember.")
                 and not i.class_path.startswith(tuple(p + "." for p in catalog.BUILTIN_PACKAGES))]
    assert not elsewhere, f"plugins outside the packages ember.catalog reads: {elsewhere}"
    assert catalog.kinds() == list(registry.PLUGIN_KINDS) + list(registry.EXTRA_KINDS)
    for kind, path in catalog.EXTRA_KINDS.items():
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is registry.EXTRA_KINDS[kind]


def test_the_source_list_leaves_out_abstract_and_private_classes():
    listed = catalog.builtin_plugins()
    assert "AudioEncoder" not in listed and "PuzzleData" not in listed  # ABCs with an abstract method left
    assert listed["LowRankPM"].kind == "procedural_memory"  # forward comes from SlotMemory, the first base
    assert listed["EmberCheckpoint"].kind == "callback"  # through Lightning's ModelCheckpoint
