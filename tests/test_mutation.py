"""benchmarks/mutation.py, the planted-bug check (`make mutate`): every mutation still edits the code it names at
exactly one place, and a mutant run end to end is killed by its tests."""

import importlib.util
import json

import pytest

from helpers import ROOT, load_script

mutation = load_script("benchmarks/mutation.py")


def test_every_mutation_edits_its_file_at_exactly_one_place():
    names = [m.name for m in mutation.MUTATIONS]
    assert len(names) == len(set(names)), "mutation names repeat"
    for m in mutation.MUTATIONS:
        source = (ROOT / m.file).read_text()
        assert source.count(m.old) == 1, f"{m.name}: its snippet is in {m.file} {source.count(m.old)} times, not once"
        assert mutation.mutated_source(m) != source, f"{m.name} changes nothing"


def test_every_mutated_file_has_tests_and_imports_under_its_module_name():
    for file in {m.file for m in mutation.MUTATIONS}:
        assert mutation.TESTS[file] and all((ROOT / test).is_file() for test in mutation.TESTS[file]), file
        spec = importlib.util.find_spec(mutation.module_name(file))
        assert spec is not None and spec.origin == str(ROOT / file), file


@pytest.mark.slow
def test_a_mutant_is_killed_and_the_results_written(tmp_path):
    out = tmp_path / "mutation.json"
    assert mutation.main(["--only", "scan.doubling_stops_early", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["killed"] == result["total"] == 1 and result["kill_rate"] == 1.0
    assert "test_scan.py" in result["mutants"][0]["killed_by"]
