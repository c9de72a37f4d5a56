"""Built-in reasoning plugins."""
