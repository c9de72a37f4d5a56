"""Built-in memory plugins."""
