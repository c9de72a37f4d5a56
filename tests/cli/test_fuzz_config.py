"""Fuzz: one random override of a model or data option of a debug config, inside or outside its range (0,
negative, huge, the wrong type, a NaN string, a path that exists or does not), given to `ember fit` for one step.
Every case exits 0 or 2 with no traceback and changes no file that existed (the property: tests/cli/conftest.py).

The options are those of the parsed config (`ember fit --config C --print_config`: every init argument, defaults
included). Replay a failing case with the EMBER_FUZZ_SEED its message prints.
"""

import contextlib
import io
import json

import pytest
import yaml

from helpers import FUZZ_EXAMPLES, ONE_STEP, ROOT, fuzz_rng, main

pytestmark = pytest.mark.slow  # a case that passes construction trains one step
CONFIGS = ("quickstart", "transformer", "memory_recall", "sudoku", "maze", "jepa_audio")
# values a user could mean, and values no option takes; FILE, FOLDER, MISSING stand for paths in the case's folder
INT = (["1", "2"], ["0", "-1", str(-(2**31)), str(2**40), str(2**63), "1.5", "abc", "nan", "[1, 2]", "{}", ""])
FLOAT = (["0.5", "1e-3"], ["0", "-1", "nan", "inf", "-inf", "1e30", "abc", "[0.5]", ""])
BOOL = (["true", "false"], ["maybe", "2", "nan", "[]"])
NONE = (["null"], ["0", "-1", "1", "abc", "[1, 2]", "{}", "FILE", "FOLDER", "MISSING"])
STR = ([], ["", "abc", "FILE", "FOLDER", "MISSING", "x" * 300])
CLASS = ([], ["NoSuchPlugin", "TextBytes", "EmberModel", "", "os.system", "lightning.pytorch.Trainer"])
LIST = (["null"], ["[]", "abc", "[-1]", "[1e30, 1e30, 1e30]", "{}", "[[1]]"])
# DataLoader workers are processes: a huge count would fork until the machine runs out; small and wrong ones only
WORKERS = (["0", "1"], ["-1", "-5", "1.5", "abc", "nan"])


def parsed_config(name: str) -> dict:
    """The config as LightningCLI parses it (every init argument, defaults included)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / f"configs/debug/{name}.yaml"), "--print_config"])
    return yaml.safe_load(out.getvalue())


def options(node, key: str):
    """(dotted option, configured value) of every leaf under node; a class (class_path) is an option itself."""
    if isinstance(node, dict) and "class_path" in node:
        yield key, node
        for name, value in (node.get("init_args") or {}).items():
            yield from options(value, f"{key}.init_args.{name}")
    elif isinstance(node, dict):
        for name, value in node.items():
            yield from options(value, f"{key}.{name}")
    else:
        yield key, node


def pools(key: str, value) -> tuple[list[str], list[str]]:
    """(values inside the option's range, values outside it) for an option configured as `value`."""
    if key.endswith("num_workers"):
        return WORKERS
    if isinstance(value, dict):
        return [], CLASS[1]
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return [str(value), str(max(1, value // 2)), str(2 * value), *INT[0]], INT[1]
    if isinstance(value, float):
        return [str(value), str(value / 2), str(2 * value), *FLOAT[0]], FLOAT[1]
    if value is None:
        return NONE
    if isinstance(value, str):
        return [value], STR[1]
    shorter = json.dumps(value[:-1]) if isinstance(value, list) and value else "[]"
    return [json.dumps(value), *LIST[0]], [shorter, *LIST[1]]


@pytest.fixture(scope="module")
def config_options() -> dict[str, tuple[str, list]]:
    out = {}
    for name in CONFIGS:
        config = parsed_config(name)
        out[name] = (str(ROOT / f"configs/debug/{name}.yaml"),
                     [*options(config["model"], "model"), *options(config["data"], "data")])
    return out


def override(config_options, name: str, index: int) -> tuple[str, str, str]:
    """The case's (option, inside or outside, value)."""
    rng = fuzz_rng("config", name, index)
    key, value = config_options[name][1][int(rng.integers(len(config_options[name][1])))]
    inside, outside = pools(key, value)
    where = "inside" if inside and rng.random() < 0.35 else "outside"
    pool = inside if where == "inside" else outside
    return key, where, pool[int(rng.integers(len(pool)))]


@pytest.mark.parametrize("index", range(FUZZ_EXAMPLES))
@pytest.mark.parametrize("name", CONFIGS)
def test_an_override_exits_0_or_2_and_changes_nothing(name, index, config_options, fuzz, tmp_path):
    key, where, value = override(config_options, name, index)
    (tmp_path / "precious.txt").write_text("a file the user keeps\n" * 50)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious/notes.txt").write_text("more of them\n" * 50)
    paths = {"FILE": tmp_path / "precious.txt", "FOLDER": tmp_path / "precious", "MISSING": tmp_path / "missing"}
    value = str(paths.get(value, value))
    config = config_options[name][0]
    fuzz(f"config override, {where} the range", f"{name}: --{key} {value!r}",
         ["fit", "--config", config, *ONE_STEP, f"--{key}", value], watch=[tmp_path, config])
