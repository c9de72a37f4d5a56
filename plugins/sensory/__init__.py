"""Built-in sensory plugins."""
