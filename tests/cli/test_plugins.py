"""`ember plugins`: every kind listed without importing Lightning or torch; `show` prints the options of every class
a config can name; an unknown name gets a suggestion."""

import importlib.metadata
import subprocess
import sys

import pytest
import yaml

from ember import catalog
from ember.cli.main import main
from helpers import ROOT


def _class_paths(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "class_path" and isinstance(value, str):
                yield value
            else:
                yield from _class_paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from _class_paths(value)


CONFIG_CLASS_PATHS = sorted({name for file in (ROOT / "configs").rglob("*.yaml")
                             for name in _class_paths(yaml.safe_load(file.read_text()) or {})})


def test_every_kind_is_listed_with_descriptions(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in ("sensory:", "reasoning:", "backbone:", "procedural_memory:", "episodic_memory:",
                 "neuromodulator:", "consolidator:", "data:"):
        assert kind in out
    assert "NMLBackbone" in out and "Neural Memory Layers" in out
    assert "TransformerBackbone" in out and "TextBytes" in out


def test_the_list_imports_neither_lightning_nor_torch():
    code = ("import sys; from ember.cli.main import main; assert main(['plugins']) == 0; "
            "print('HEAVY', sorted(m for m in ('lightning', 'torch', 'jsonargparse') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "NMLBackbone" in done.stdout and "HEAVY []" in done.stdout


def test_show_prints_options_defaults_and_help(capsys):
    assert main(["plugins", "show", "NMLBackbone"]) == 0
    out = capsys.readouterr().out
    assert "ember.plugins.backbone.nml.NMLBackbone" in out
    assert "--window" in out and "default: 256" in out and "working-memory window" in out


def test_every_config_names_at_least_a_plugin_a_dotted_path_and_ember_model():
    assert {"EmberModel", "NMLBackbone", "lightning.pytorch.strategies.FSDPStrategy"} <= set(CONFIG_CLASS_PATHS)


@pytest.mark.parametrize("name", CONFIG_CLASS_PATHS)
def test_show_every_class_path_a_shipped_config_names(name, capsys):
    assert main(["plugins", "show", name]) == 0
    assert "Options (init_args):" in capsys.readouterr().out


@pytest.mark.parametrize("name, path", [
    ("EmberMLFlowLogger", "ember.tracking.EmberMLFlowLogger"),
    ("EarlyStopping", "lightning.pytorch.callbacks.early_stopping.EarlyStopping"),
    ("CSVLogger", "lightning.pytorch.loggers.csv_logs.CSVLogger"),
    ("AdamW", "torch.optim.adamw.AdamW"),
    ("CosineAnnealingLR", "torch.optim.lr_scheduler.CosineAnnealingLR"),
])
def test_show_short_names_of_lightning_torch_and_ember_classes(name, path, capsys):
    assert main(["plugins", "show", name]) == 0
    assert path in capsys.readouterr().out


@pytest.mark.parametrize("value, shown", [
    ("ember.plugins.memory.episodic:EpisodicStore", "EpisodicStore  (episodic_memory; ember.plugins.memory.episodic."),
    ("ember.plugins.memory", "my_memory (installed plugin, module ember.plugins.memory) adds:\n  EpisodicStore"),
])
def test_an_installed_plugin_is_listed_unimported_and_shown_by_its_entry_point_name(value, shown, monkeypatch, capsys):
    point = importlib.metadata.EntryPoint("my_memory", value, catalog.ENTRY_POINT_GROUP)
    monkeypatch.setattr(catalog, "entry_points", lambda group: [point] if group == catalog.ENTRY_POINT_GROUP else [])
    assert main(["plugins"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["my_memory"])
    assert line.split()[1] == value and line.endswith("(installed plugin; `ember plugins show my_memory` imports it)")
    assert main(["plugins", "show", "my_memory"]) == 0
    assert shown in capsys.readouterr().out


@pytest.mark.parametrize("name, near", [("TransformerBackbon", "TransformerBackbone"), ("EmberModle", "EmberModel"),
                                        ("lightning.pytorch.callbacks.EarlyStoping", "EarlyStopping")])
def test_show_unknown_name_suggests(name, near, caplog):
    assert main(["plugins", "show", name]) == 2
    assert f"did you mean {near}" in caplog.text


@pytest.mark.parametrize("name", ["lr_scheduler", "ember.plugins.backbone.nml"])
def test_show_a_module_says_a_class_path_names_a_class(name, caplog):
    assert main(["plugins", "show", name]) == 2
    assert "not a class" in caplog.text
