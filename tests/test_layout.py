"""The installed package list in pyproject.toml covers every package folder (package-dir mapping)."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {"ember": "ember", "ember.plugins": "plugins", "ember.data_modules": "data_modules",
           "ember.callbacks": "callbacks"}


def test_every_package_folder_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == listed


def test_plugin_folders_install_under_ember():
    import ember.callbacks
    import ember.data_modules
    import ember.plugins

    assert Path(ember.plugins.__file__).parent == ROOT / "plugins"
    assert Path(ember.data_modules.__file__).parent == ROOT / "data_modules"
    assert Path(ember.callbacks.__file__).parent == ROOT / "callbacks"
