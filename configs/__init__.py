"""Ember's shipped configs (YAML files under this folder), installed as `ember.configs` so a `pip install` user has
them too: `ember configs list`, `ember configs cp NAME DEST`."""
