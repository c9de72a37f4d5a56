"""`ember sleep`: a deployed model sleeps on the sessions its memory state was built from; the new checkpoint holds
the changed slow weights, the inputs stay as they were, and bad input gets one message each."""

import hashlib
import json

import pytest
import torch

from ember.cli.runs import load_trained
from helpers import run_cli, session_state

pytestmark = pytest.mark.slow  # a trained model and a memory state
SESSION = "Ada Obi's city is Lyon. Ben Kato's phone is 55510203. " * 6
CONSOLIDATOR = ("--consolidator", "ReplayDistillation", "--consolidator.init_args.steps", "3",
                "--consolidator.init_args.lr", "1e-2")


@pytest.fixture(scope="module")
def deployed(trained_runs, tmp_path_factory):
    """(config, checkpoint, memory state, replay folder) of the trained memory run after one session."""
    folder = tmp_path_factory.mktemp("deployed")
    state = session_state(trained_runs["memory"], folder, SESSION)
    replay = folder / "sessions"
    replay.mkdir()
    (replay / "monday.txt").write_text(SESSION)
    return (*trained_runs["memory"], str(state), str(replay))


def digest(*paths) -> list[str]:
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def sleep(deployed, out, *extra):
    config, ckpt, state, replay = deployed
    return run_cli("sleep", "--config", config, "--ckpt_path", ckpt, "--memory_state", state, "--replay", replay,
                   "--out", str(out), *extra)


def test_sleep_writes_a_new_checkpoint_and_leaves_its_inputs_alone(deployed, tmp_path, capsys):
    config, ckpt, state, _ = deployed
    before = digest(ckpt, state)
    report = tmp_path / "report.json"
    assert sleep(deployed, tmp_path / "new.ckpt", *CONSOLIDATOR, "--report", str(report)) == 0
    assert digest(ckpt, state) == before
    printed = capsys.readouterr().out
    assert "slept with ReplayDistillation on 1 session(s)" in printed and "what moved" in printed
    saved = json.loads(report.read_text())
    # a 2-step model's memories add next to nothing, so the KL is tiny either way (the consolidators' own tests
    # check that a sleep lowers it)
    assert {"kl_before", "kl_after", "anchor"} <= set(saved["metrics"])
    assert saved["moved"] and not any(".memory." in m for m in saved["moved"])
    old, new = load_trained(config, ckpt), load_trained(config, str(tmp_path / "new.ckpt"))
    changed = {n for (n, a), b in zip(old.named_parameters(), new.parameters()) if not torch.equal(a, b)}
    assert changed and {n.rsplit(".", 1)[0] for n in changed} == set(saved["moved"])
    assert torch.load(tmp_path / "new.ckpt", weights_only=True)["ember_sleep"]["sessions"] == ["monday.txt"]


@pytest.mark.parametrize("case, message", [
    ("out_exists", "already exists: ember sleep never overwrites"),
    ("empty_replay", "holds no session to replay"),
    ("other_model_state", "was written by another model"),
    ("no_consolidator", "has no consolidator"),
])
def test_bad_input_gets_one_message_and_changes_nothing(deployed, trained_runs, tmp_path, case, message, caplog):
    config, ckpt, state, replay = deployed
    out, extra = tmp_path / "new.ckpt", list(CONSOLIDATOR)
    if case == "out_exists":
        out.write_bytes(b"the user's file")
    elif case == "empty_replay":
        replay = str(tmp_path / "empty")
        (tmp_path / "empty").mkdir()
    elif case == "other_model_state":
        state = str(session_state(trained_runs["plain"], tmp_path, SESSION))
    else:
        extra = []
    before = digest(ckpt, state) + (digest(out) if out.exists() else [])
    assert sleep((config, ckpt, state, replay), out, *extra) == 2
    assert message in caplog.text
    assert digest(ckpt, state) + (digest(out) if out.exists() else []) == before
    assert out.exists() == (case == "out_exists")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
