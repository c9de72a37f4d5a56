"""Checks for the GPU-machine kit (benchmarks/device/: device_wheels.sh, device_session.sh); stdlib + packaging.

    python benchmarks/device/device_deps.py wheels .whl [.whl/fallback]
        each wheel fits CPython 3.12 on manylinux x86-64, one version per package; sizes and total
    python benchmarks/device/device_deps.py closure report.json
        pip's --report split into "carry" and "on device"
    python3 benchmarks/device/device_deps.py requirements /tmp/site
        (on the device, PYTHONPATH set) requirements of ember and of every package in /tmp/site that the
        interpreter does not meet; --wheels-from DIR: only the wheels in DIR for them

`requirements` never fails (exit 0): it reports, and device_session.sh installs a fallback wheel for each unmet name.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import canonicalize_name, parse_wheel_filename
    from packaging.version import Version
except ImportError:  # pip always vendors a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.tags import compatible_tags, cpython_tags
    from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]  # benchmarks/device/ -> the repository root
# The nvidia-h200 image's Python packages (/work/.library/device/KINDS.md, "Python packages already there",
# read on that machine on 2026-11-17). Names only: versions there are unknown, hence `requirements`.
DEVICE_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split())
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(39, 4, -1)] + ["manylinux2014_x86_64", "manylinux2010_x86_64",
                                                                      "manylinux1_x86_64", "linux_x86_64"]
TARGET_TAGS = set(cpython_tags((3, 12), ["cp312", "abi3", "none"], PLATFORMS)) | \
    set(compatible_tags((3, 12), "cp312", PLATFORMS))


# ---- wheels: what device_wheels.sh downloaded ---------------------------------------------------
def check_wheels(folders: list[Path]) -> int:
    problems, seen, total = [], {}, 0
    rows = []
    for folder in folders:
        for wheel in sorted(folder.glob("*.whl")):
            name, version, _, tags = parse_wheel_filename(wheel.name)
            size = wheel.stat().st_size
            total += size
            fits = bool(set(tags) & TARGET_TAGS)
            pure = any(t.abi == "none" and t.platform == "any" for t in tags)
            rows.append((name, str(version), size, "pure" if pure else "cp312" if fits else "NO", folder.name))
            if not fits:
                problems.append(f"{wheel.name}: no tag for CPython 3.12 on manylinux x86-64")
            if name in seen:
                problems.append(f"{name}: two wheels ({seen[name]} and {wheel.name}); pip refuses to install both")
            seen[name] = wheel.name
    width = max((len(r[0]) + len(r[1]) for r in rows), default=20) + 3
    for name, version, size, kind, where in rows:
        print(f"  {name + '==' + version:<{width}} {size / 2**20:7.2f} MiB  {kind:<5} {where}")
    print(f"  {len(rows)} wheels, {total / 2**20:.2f} MiB in all")
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    return 1 if problems or not rows else 0


# ---- closure: pip install --dry-run --report's answer, split -------------------------------------
def closure(report: Path) -> int:
    carry, there = [], []
    for item in json.loads(report.read_text())["install"]:
        meta = item["metadata"]
        pin = f"{canonicalize_name(meta['name'])}=={meta['version']}"
        (there if canonicalize_name(meta["name"]) in DEVICE_HAS else carry).append(pin)
    print("# not on the device (carry):\n" + "\n".join(sorted(carry)))
    print("# on the device already (carry only if its version there is too old):\n" + "\n".join(sorted(there)))
    return 0


# ---- requirements: on the device, after the install ---------------------------------------------
def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _unmet(requirements: list[str], extras: set[str], by: str) -> list[tuple[str, str, str | None, str]]:
    out = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        have = _installed(req.name)
        if have is None or not req.specifier.contains(Version(have), prereleases=True):
            out.append((canonicalize_name(req.name), str(req.specifier) or "(any)", have, by))
    return out


def _ember_requirements() -> list[str]:
    import tomllib  # deferred: Python 3.11+, and only this function reads pyproject.toml

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _wheels_for(names: set[str], folder: Path) -> list[str]:
    return sorted(str(w) for w in folder.glob("*.whl") if parse_wheel_filename(w.name)[0] in names)


def requirements(site: Path, wheels_from: Path | None = None) -> int:
    wanted: dict[str, set[str]] = {}  # carried distribution -> extras someone asked for
    unmet = _unmet(_ember_requirements(), set(), "ember")
    for text in _ember_requirements():
        req = Requirement(text)
        wanted.setdefault(canonicalize_name(req.name), set()).update(req.extras)
    for dist in metadata.distributions(path=[str(site)]):
        name = canonicalize_name(dist.metadata["Name"])
        unmet += _unmet(dist.requires or [], wanted.get(name, set()), f"{name} {dist.version}")
    if wheels_from is not None:
        print("\n".join(_wheels_for({u[0] for u in unmet}, wheels_from)))
        return 0
    shadowed = []
    for dist in metadata.distributions(path=[str(site)]):
        name = dist.metadata["Name"]
        others = [d.version for d in metadata.distributions(name=name) if Path(str(d.locate_file(""))) != site]
        if others:
            shadowed.append(f"{canonicalize_name(name)} {dist.version} (over {', '.join(sorted(set(others)))})")
    print(f"requirements: {len(unmet)} unmet" + "".join(
        f"\n  {n} {spec}: have {have or 'none'} (needed by {by})" for n, spec, have, by in sorted(unmet)))
    if shadowed:
        print("carried over the machine's own: " + "; ".join(sorted(shadowed)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    wheels = sub.add_parser("wheels", help="check downloaded wheels")
    wheels.add_argument("folders", nargs="+", type=Path)
    report = sub.add_parser("closure", help="split a pip --report into carry / on device")
    report.add_argument("report", type=Path)
    reqs = sub.add_parser("requirements", help="unmet requirements of ember and the carried packages")
    reqs.add_argument("site", type=Path)
    reqs.add_argument("--wheels-from", type=Path, default=None,
                      help="print only the wheels in this folder that provide an unmet name, one a line")
    args = parser.parse_args(argv)
    if args.command == "wheels":
        return check_wheels(args.folders)
    if args.command == "closure":
        return closure(args.report)
    return requirements(args.site.resolve(), args.wheels_from)


if __name__ == "__main__":
    sys.exit(main())
