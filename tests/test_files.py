"""ember.files: an interrupted write leaves the old file whole."""

import pytest

from ember import files


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")


    with pytest.raises(TypeError):
        files.atomic_write_text(target, 123)  # fails while writing
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]
