"""Built-in language backbones (H-module and baselines)."""
