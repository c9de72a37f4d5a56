import pytest

from ember import files, tracking
from ember.errors import EmberConfigError


def test_default_is_a_sqlite_store_under_the_run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", None)
    assert tracking.resolve_tracking_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"


def test_environment_variable_overrides_and_argument_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "ENV_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_tracking_uri(str(tmp_path)) == "http://127.0.0.1:5000"
    assert tracking.resolve_tracking_uri(str(tmp_path), "sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("uri", ["file:./mlruns", "./mlruns"])
def test_the_file_store_is_refused_with_the_fix(tmp_path, uri):
    with pytest.raises(EmberConfigError, match="sqlite:///"):
        tracking.resolve_tracking_uri(str(tmp_path), uri)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")


    with pytest.raises(TypeError):
        files.atomic_write_text(target, 123)  # fails while writing
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
