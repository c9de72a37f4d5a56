"""LightningDataModules and task generators (installed as `ember.data_modules`)."""
