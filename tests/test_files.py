"""ember.files: an interrupted write leaves the old file whole; a write keeps the file's mode and links."""

import os
import stat

import pytest

from ember import files
from ember.errors import EmberConfigError


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    with pytest.raises(TypeError):
        files.atomic_write_text(target, 123)  # fails while writing
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_usual_mode(tmp_path):
    shared = tmp_path / "shared.yaml"
    shared.write_text("old")
    shared.chmod(0o640)
    files.atomic_write_text(shared, "new")
    assert shared.read_text() == "new" and stat.S_IMODE(shared.stat().st_mode) == 0o640
    before = os.umask(0o027)
    try:
        files.atomic_write_text(tmp_path / "fresh.yaml", "x")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "fresh.yaml").stat().st_mode) == 0o640  # 0666 less the umask, not 0600


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "me.mem"
    target.write_text("old")
    link = tmp_path / "me.mem"
    link.symlink_to(target)
    files.atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["me.mem"]  # no temporary file left


def test_check_writable_names_the_option_and_the_fix(tmp_path):
    files.check_writable(tmp_path / "new.mem", "--memory_state")  # a new file in a folder that exists: fine
    with pytest.raises(EmberConfigError, match="--memory_state .* the folder .* does not exist"):
        files.check_writable(tmp_path / "no" / "x.mem", "--memory_state")
    with pytest.raises(EmberConfigError, match="is a folder"):
        files.check_writable(tmp_path, "--memory_state")
    assert list(tmp_path.iterdir()) == []  # the check leaves nothing behind


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_folder_leaves_a_whole_folder_at_the_name_if_interrupted(exchange, tmp_path, monkeypatch):
    """The folder at the name is the previous one or the new one, never neither, whenever the process stops: here
    the delete of the previous folder fails (on Linux the folders swap names in one step; elsewhere the previous one
    is renamed aside first)."""
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/old.txt").write_text("old")
    (tmp_path / "new").mkdir()
    (tmp_path / "new/new.txt").write_text("new")

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.replace_folder(tmp_path / "new", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]
    monkeypatch.undo()
    files.replace_folder(tmp_path / "out", tmp_path / "fresh")  # no folder at the name yet: a plain rename
    assert not (tmp_path / "out").exists() and (tmp_path / "fresh/new.txt").read_text() == "new"
