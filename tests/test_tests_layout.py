"""The test tree mirrors the package (tests/conftest.py says where a test goes), so no test lands at random.

A folder tests/<a>/<b> holds the tests of the package ember.<a>.<b> (tests/ops: ember.ops, tests/plugins/memory:
ember.plugins.memory, tests/data_modules: ember.data_modules); the top level holds those of ember itself. The
packages are pyproject's list, which tests/test_layout.py keeps complete.
"""

from pathlib import Path

import tomllib

TESTS = Path(__file__).resolve().parent
PACKAGES = set(tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
MAX_TEST_FILE_LINES = 300


def _package(folder: Path) -> str:
    """The package whose tests a folder of tests/ holds: tests/plugins/memory -> ember.plugins.memory."""
    return ".".join(("ember", *folder.relative_to(TESTS).parts))


def _python_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_test_folder_mirrors_a_package():
    wrong = []
    for file in _python_files():
        package = _package(file.parent)
        if package not in PACKAGES or package == "ember.plugins":  # plugins: one folder per kind
            wrong.append(f"{file.relative_to(TESTS)}: no package {package}")
    kinds = sorted(p.removeprefix("ember.plugins.") for p in PACKAGES if p.startswith("ember.plugins."))
    assert not wrong, ("test files outside a folder that mirrors a package (ops, cli, bench, plugins/<kind> with "
                       f"kind one of {kinds}, data_modules, callbacks, or the top level for ember/*.py):\n"
                       + "\n".join(wrong))


def test_test_folders_hold_only_tests_and_conftest():
    allowed = {"conftest.py"}
    wrong = [str(file.relative_to(TESTS)) for file in _python_files()
             if not file.name.startswith("test_") and file.name not in allowed
             and not (file.parent == TESTS and file.name == "helpers.py")]
    assert not wrong, "files pytest would not collect (shared helpers go in tests/helpers.py):\n" + "\n".join(wrong)


def test_test_file_names_are_unique_and_files_short():
    by_name, long = {}, []
    for file in _python_files():
        if file.name.startswith("test_"):
            by_name.setdefault(file.name, []).append(str(file.relative_to(TESTS)))
            lines = len(file.read_text().splitlines())
            if lines > MAX_TEST_FILE_LINES:
                long.append(f"{file.relative_to(TESTS)}: {lines} lines")
    twins = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not twins, f"test files of one name in two folders (pytest imports them by basename): {twins}"
    assert not long, f"test files over {MAX_TEST_FILE_LINES} lines (split by the module or aspect tested):\n" + \
        "\n".join(long)
