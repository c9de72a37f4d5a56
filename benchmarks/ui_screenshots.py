"""Screenshots of the MLflow UI serving Ember runs, taken by a headless browser against a `make ui` server.

Makes a small store of its own (two fits of configs/debug/nml_memory.yaml with the same seed, and an `ember test`
of the first fit's checkpoint), serves it with `make ui` on a port of this machine's loopback, and saves:

  experiment.png    the experiment's runs (model-training view): two names from one seed, the test run under its fit
  run.png           the first fit's page: its description, provenance tags, parameters, dataset and child run
  metrics.png       the same run's metric charts
  curves.png        its learning-curve artifact (plots/learning_curves.png) in the artifact browser
  slots.png         its slot-usage artifact (plots/slot_usage.png)

and checks what each page must show: the two run names on the experiment page, the `ember.*` tags on the run page.
Exit status 0 when every page held what it should, 1 otherwise (the pages are saved either way).

Needs a Chromium (Debian: `apt-get install chromium`) and Playwright's Python package (`pip install -e '.[ui-shots]'`);
`make ui` builds the MLflow server in .venv-ui on first use (some minutes, once).

    python benchmarks/ui_screenshots.py --out shots
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "debug" / "nml_memory.yaml"
PAGES = ("experiment.png", "run.png", "metrics.png", "curves.png", "slots.png")
STEPS = 100  # each fit: validated every 10 steps, so the curves have ten points
TAGS = ("ember.git_commit", "ember.version", "ember.command", "ember.parameters")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for the PNGs and the store (OUT/runs); must be new or empty")
    parser.add_argument("--port", type=int, default=0, help="the UI server's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--browser", default=None,
                        help="the Chromium executable (default: chromium or chromium-browser on PATH)")
    parser.add_argument("--server_timeout", type=float, default=900.0,
                        help="seconds to wait for the server (the first `make ui` builds .venv-ui)")
    parser.add_argument("--width", type=int, default=1600, help="browser window width in pixels")
    parser.add_argument("--height", type=int, default=1000, help="browser window height in pixels")
    return parser.parse_args(argv)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_setup(args) -> str:
    """Everything that can be refused before any work: the output folder, the browser, Playwright."""
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        fail(f"--out {args.out} exists and is not an empty folder: name a new one (nothing there is changed)")
    browser = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser or not Path(browser).exists():
        fail("no Chromium found: install one (Debian: apt-get install chromium) or name it with --browser PATH")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        fail("Playwright's Python package is missing: pip install -e '.[ui-shots]' (it drives the system Chromium; "
             "no browser download)")
    return browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ember(*args: str, log: Path) -> None:
    """One `ember` command of the project's venv, its output appended to `log`; a failure stops the script."""
    command = [str(Path(sys.executable).parent / "ember"), *args]
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        if subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode:
            fail(f"`{' '.join(command[:3])} ...` failed; its output is in {log}")


def make_runs(runs: Path, log: Path) -> tuple[str, list]:
    """Two fits with one seed and a test of the first fit's best checkpoint; their MLflow runs, oldest first."""
    import mlflow

    for _ in range(2):
        ember("fit", "--config", str(CONFIG), "--trainer.logger.init_args.run_dir", str(runs),
              "--trainer.max_steps", str(STEPS), log=log)
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ember")
    fits = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    folder = runs / experiment.experiment_id / fits[0].info.run_id
    ember("test", "--config", str(folder / "config.yaml"), "--ckpt_path", str(folder / "checkpoints" / "best.ckpt"),
          log=log)
    return experiment.experiment_id, fits


def serve(runs: Path, port: int, log: Path, timeout: float) -> subprocess.Popen:
    """`make ui` on 127.0.0.1:port in its own process group, once /health answers."""
    out = log.open("a")
    server = subprocess.Popen(["make", "-s", "ui", f"RUNS={runs}", f"UI_PORT={port}", "UI_HOST=127.0.0.1",
                               f"BIN={Path(sys.executable).parent}"],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"`make ui` stopped (status {server.returncode}); its output is in {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(1.0)
    stop(server)
    fail(f"the MLflow server did not answer within {timeout:.0f} s; its output is in {log}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def close_assistant(page) -> None:
    """MLflow 3 opens its assistant panel beside every page; closed, the page gets the width."""
    button = page.query_selector("button[aria-label=Close]")
    if button is not None and button.is_visible():
        button.click()
        page.wait_for_timeout(300)


def widen(page, column: str, pixels: int) -> None:
    """Drags the right edge of a runs-table column header (ag-grid's resize handle) to show whole names."""
    header = page.query_selector(f".ag-header-cell[col-id='{column}']")
    if header is None:
        return
    box = header.bounding_box()
    x, y = box["x"] + box["width"] - 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + pixels, y, steps=10)
    page.mouse.up()
    page.wait_for_timeout(300)


def shoot(browser_path: str, base: str, experiment_id: str, fits: list, out: Path, size: tuple[int, int]) -> list[str]:
    """Saves the five pages; returns what a page lacked (empty: all there)."""
    from playwright.sync_api import sync_playwright

    run = fits[0].info.run_id
    names = [f.info.run_name for f in fits]
    missing = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": size[0], "height": size[1]})

        def visit(route: str, ready: str):
            page.goto(f"{base}/#/experiments/{experiment_id}/{route}")
            page.wait_for_selector(f"text={ready}", timeout=60_000)
            close_assistant(page)
            page.wait_for_timeout(1500)  # charts and images draw after the text

        visit("runs?workflowType=machine_learning", "matching runs")
        expand = page.query_selector(".ag-row button")  # the fit's fold: its test run shows under it
        if expand is not None:
            expand.click()
            page.wait_for_timeout(500)
        widen(page, "attributes.`Run Name`", 160)
        page.screenshot(path=out / "experiment.png")
        text = page.inner_text("body")
        missing += [f"experiment page: run name {n}" for n in names if n not in text]

        visit(f"runs/{run}?workflowType=machine_learning", "Tags")
        page.screenshot(path=out / "run.png", full_page=True)
        text = page.inner_text("body")
        missing += [f"run page: tag {t}" for t in TAGS if t not in text]

        visit(f"runs/{run}/model-metrics?workflowType=machine_learning", "Add chart")
        page.fill("input[placeholder*='Search metric']", "bpb")  # the charts of bits per byte, train and val
        page.set_viewport_size({"width": size[0], "height": 2 * size[1]})  # the page scrolls inside: a taller window
        page.wait_for_timeout(1500)
        page.screenshot(path=out / "metrics.png")
        page.set_viewport_size({"width": size[0], "height": size[1]})

        visit(f"runs/{run}/artifacts/plots/learning_curves.png?workflowType=machine_learning", "learning_curves.png")
        page.screenshot(path=out / "curves.png")
        page.click("text=slot_usage.png")  # the artifact tree; a new address alone keeps the open file
        page.wait_for_selector("text=plots/slot_usage.png", timeout=60_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=out / "slots.png", full_page=True)
        browser.close()
    return missing


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()  # the commands below run from the checkout
    browser = check_setup(args)
    args.out.mkdir(parents=True, exist_ok=True)
    runs, log = args.out / "runs", args.out / "log.txt"
    print(f"making the runs in {runs} (two fits with one seed, one test; a minute or two)", flush=True)
    experiment_id, fits = make_runs(runs, log)
    port = args.port or free_port()
    print(f"serving them with `make ui` on 127.0.0.1:{port}", flush=True)
    server = serve(runs, port, log, args.server_timeout)
    try:
        missing = shoot(browser, f"http://127.0.0.1:{port}", experiment_id, fits, args.out, (args.width, args.height))
    finally:
        stop(server)
    for name in PAGES:
        print(f"  {args.out / name}")
    for line in missing:
        print(f"missing from the {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
