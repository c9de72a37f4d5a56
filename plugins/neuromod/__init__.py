"""Built-in neuromod plugins."""
