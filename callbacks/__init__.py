"""Lightning callbacks (installed as `ember.callbacks`)."""
