"""The `ember` commands. `main.py` dispatches to one module per command; `lightning.py` holds EmberCLI
(fit/validate/test/predict), `checks.py` the config checks before parsing, `runs.py` the loading of a
trained run that the other commands and the analysis scripts share."""
