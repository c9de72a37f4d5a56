"""benchmarks/ui_screenshots.py (the MLflow UI in a headless browser) and the UI address the fit summary prints."""

import pytest

from ember import tracking
from helpers import load_script


def test_the_ui_address_opens_the_model_training_view_of_the_experiment():
    assert tracking.ui_address("3") == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    assert tracking.ui_address(None, "http://h:1") == "http://h:1/#/experiments"


def test_the_hint_ends_with_the_address_to_open(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    hint = tracking.EmberMLFlowLogger(run_dir=str(tmp_path)).ui_command()
    assert hint.endswith("then open http://127.0.0.1:5000/#/experiments")  # no experiment made yet


def test_a_folder_in_use_is_refused_and_left_as_it_was(tmp_path, capsys):
    shots = load_script("benchmarks/ui_screenshots.py")
    (tmp_path / "keep.png").write_bytes(b"mine")
    with pytest.raises(SystemExit) as stop:
        shots.main(["--out", str(tmp_path)])
    assert stop.value.code == 2 and "is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"] and (tmp_path / "keep.png").read_bytes() == b"mine"


def test_a_missing_browser_is_one_line_that_names_the_fix(tmp_path, capsys):
    shots = load_script("benchmarks/ui_screenshots.py")
    with pytest.raises(SystemExit) as stop:
        shots.main(["--out", str(tmp_path / "new"), "--browser", str(tmp_path / "no-such-chromium")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "apt-get install chromium" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()
