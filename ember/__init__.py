"""Ember: a Lightning platform for sequence models that keep learning while they run."""

__version__ = "0.1.0"
