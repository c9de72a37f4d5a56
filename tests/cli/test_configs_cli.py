"""`ember configs list|cp`: every config of the repository ships in the package, copies never replace a file
unasked, and a non-editable install can copy one and train it from an empty folder."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ember.cli.configs import shipped
from ember.cli.main import main
from helpers import ROOT


def test_every_repository_config_ships():
    in_repo = {str(f.relative_to(ROOT / "configs").with_suffix("")) for f in (ROOT / "configs").rglob("*.yaml")}
    assert set(shipped()) == in_repo and "debug/quickstart" in in_repo


def test_list_filters_by_folder(capsys):
    assert main(["configs", "list", "--under", "memory"]) == 0
    names = capsys.readouterr().out.split()
    assert "memory/mqar" in names and all(n.startswith("memory/") for n in names)


def test_cp_copies_and_never_replaces_unasked(tmp_path, caplog):
    dest = tmp_path / "q.yaml"
    assert main(["configs", "cp", "debug/quickstart", str(dest)]) == 0
    assert dest.read_bytes() == (ROOT / "configs/debug/quickstart.yaml").read_bytes()
    dest.write_text("mine")
    assert main(["configs", "cp", "quickstart", str(dest)]) == 2
    assert dest.read_text() == "mine" and "--overwrite" in caplog.text
    assert main(["configs", "cp", "configs/quickstart.yaml", str(dest), "--overwrite"]) == 0
    assert dest.read_bytes() == (ROOT / "configs/quickstart.yaml").read_bytes()
    assert main(["configs", "cp", "memory/mqar", str(tmp_path)]) == 0 and (tmp_path / "mqar.yaml").is_file()


def test_cp_unknown_name_or_folder_names_the_fix(tmp_path, caplog):
    assert main(["configs", "cp", "debug/quickstrt", str(tmp_path / "q.yaml")]) == 2
    assert "did you mean debug/quickstart" in caplog.text
    assert main(["configs", "cp", "quickstart", str(tmp_path / "missing" / "q.yaml")]) == 2
    assert "does not exist" in caplog.text and not (tmp_path / "missing").exists()


@pytest.mark.slow
def test_wheel_install_copies_a_config_and_trains_it(tmp_path):
    """`pip install .` (a wheel, not editable) into a fresh venv that borrows the test venv's dependencies, then
    `ember configs cp` and a 5-step fit from an empty folder: the configs travel with the package."""
    wheels, venv, empty, source = (tmp_path / name for name in ("wheels", "venv", "empty", "source"))
    # built from a copy: setuptools writes build/ beside the sources, and the checkout stays as it was
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "runs", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels,
                    source], check=True, cwd=tmp_path)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    site = Path(subprocess.run([venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies come from the test venv's site-packages; its editable `ember` finder (.pth) is not run
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (wheel,) = wheels.glob("ember-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin/python", "install", "-q", "--no-deps",
                    wheel], check=True)
    empty.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ember = [str(venv / "bin/ember")]
    where = subprocess.run([venv / "bin/python", "-c", "import ember; print(ember.__file__)"], check=True, cwd=empty,
                           capture_output=True, text=True).stdout
    assert str(venv) in where, f"ember imported from {where}, not the wheel"
    subprocess.run([*ember, "configs", "cp", "debug/quickstart", "q.yaml"], check=True, cwd=empty, env=env)
    fit = subprocess.run([*ember, "fit", "--config", "q.yaml", "--trainer.max_steps", "5",
                          "--trainer.val_check_interval", "5", "--trainer.enable_progress_bar", "false"],
                         cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert list((empty / "runs").glob("*/*/checkpoints/last.ckpt"))
