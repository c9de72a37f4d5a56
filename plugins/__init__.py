"""Built-in Ember plugins, one concept per file, grouped by kind (installed as `ember.plugins`)."""
