"""`ember bench`: `measure.py` times training and decoding, `memory.py` reads peak memory, `launches.py` counts
the plasticity loop's ops per period, `run.py` builds each variant and measures it, `report.py` writes the table,
plot and MLflow run, `command.py` is the command line."""
