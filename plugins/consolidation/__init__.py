"""Built-in consolidation plugins."""
