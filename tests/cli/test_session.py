"""`ember session`: memory state persists across runs; bad state files are refused, never half-written.
And a trained memory model with its memories switched off (memories_off, `ember test --model.init_args.memories`).
"""

import pytest
import torch

from ember import memory_state
from helpers import ROOT, fit_args, run_cli, run_folder


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "session.txt"
    path.write_text("Ada Obi's city is Lyon. " * 20)
    return str(path)


def session(config, ckpt, mem, text):
    return run_cli("session", "--config", config, "--ckpt_path", ckpt, "--memory_state", str(mem), "--input", text,
                   "--span", "64")


@pytest.mark.slow
def test_state_is_saved_then_resumed_and_slow_weights_stay_frozen(trained_runs, text, tmp_path, caplog):
    config, ckpt = trained_runs["memory"]
    before = torch.load(ckpt, weights_only=False)["state_dict"]
    mem = tmp_path / "user.mem"
    assert session(config, ckpt, mem, text) == 0
    assert "span 1 (bytes 0-64)" in caplog.text and mem.is_file()
    first = mem.read_bytes()
    caplog.clear()
    assert session(config, ckpt, mem, text) == 0
    assert f"memory state: loaded {mem}" in caplog.text
    assert mem.read_bytes() != first  # the second session continued from the first one's memory
    after = torch.load(ckpt, weights_only=False)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_state_from_another_model_is_refused_and_kept(trained_runs, text, tmp_path, caplog):
    mem = tmp_path / "user.mem"
    assert session(*trained_runs["memory"], mem, text) == 0
    saved = mem.read_bytes()
    assert session(*trained_runs["plain"], mem, text) == 2
    assert "written by another model" in caplog.text and mem.read_bytes() == saved


@pytest.mark.slow
def test_corrupt_state_file_is_refused(trained_runs, text, tmp_path, caplog):
    mem = tmp_path / "user.mem"
    mem.write_bytes(b"not a safetensors file")
    assert session(*trained_runs["memory"], mem, text) == 2
    assert "not a readable Ember memory-state file" in caplog.text
    assert mem.read_bytes() == b"not a safetensors file"


@pytest.mark.slow
def test_a_crash_while_saving_leaves_the_old_file_whole(trained_runs, text, tmp_path, monkeypatch):
    mem = tmp_path / "user.mem"
    assert session(*trained_runs["memory"], mem, text) == 0
    saved = mem.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(memory_state, "save_file", crash)
    assert session(*trained_runs["memory"], mem, text) == 130  # Ctrl+C mid-save: ember's exit status for SIGINT
    assert mem.read_bytes() == saved
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.slow
def test_empty_input_names_the_fix(trained_runs, tmp_path, caplog):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert session(*trained_runs["memory"], tmp_path / "m.mem", str(empty)) == 2
    assert "needs at least 2" in caplog.text and not (tmp_path / "m.mem").exists()


@pytest.mark.slow
def test_memories_off_neither_reads_nor_writes(trained_runs):
    from ember.cli.runs import load_trained
    from ember.ops.slot_memory import memories_off

    model = load_trained(*trained_runs["memory"])
    for name, p in model.named_parameters():
        if name.endswith("memory.out.weight"):
            p.data.normal_()  # a memory whose read-out is not zero
    tokens = torch.randint(0, 256, (1, 40))
    _, state = model(tokens)
    with memories_off(model) as count:
        off, off_state = model(tokens, state)
    assert count > 0
    for name, p in model.named_parameters():
        if name.endswith("memory.out.weight"):
            p.data.zero_()  # reads now add exactly zero
    zero_read, _ = model(tokens, state)
    assert torch.allclose(off, zero_read)
    before, after = state.tensors(), off_state.tensors()
    memory_keys = [k for k in before if k.endswith(("K", "V", "s"))]
    assert memory_keys and all(torch.equal(before[k], after[k]) for k in memory_keys)


@pytest.mark.slow
@pytest.mark.parametrize("memories", ["on", "off"])
def test_ember_test_can_switch_a_trained_models_memories_off(trained_runs, tmp_path, memories):
    from helpers import mlflow_rows

    config, ckpt = trained_runs["memory"]
    run_dir = tmp_path / memories
    assert run_cli("test", "--config", config, "--ckpt_path", ckpt, "--model.init_args.memories", memories,
                   "--trainer.logger.init_args.run_dir", str(run_dir)) == 0
    ((rate,),) = mlflow_rows(run_dir, "select value from metrics where key = 'mem/test_commit_rate'")
    # off: no memory reads or writes, so no commit at any boundary (the checkpoint's "on" is not restored over it)
    assert (rate == 0.0) == (memories == "off")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["missing_folder", "a_folder"])
def test_an_unwritable_state_path_stops_before_the_session_streams(trained_runs, text, tmp_path, caplog, where):
    target = tmp_path / "nowhere" / "m.mem" if where == "missing_folder" else tmp_path
    assert session(*trained_runs["memory"], target, text) == 2
    assert "--memory_state" in caplog.text and "span 1" not in caplog.text  # nothing was streamed


@pytest.mark.slow
def test_a_full_attention_transformer_has_no_memory_state_to_keep(text, tmp_path, caplog):
    config = str(ROOT / "configs/debug/transformer.yaml")
    assert run_cli(*fit_args(tmp_path / "runs", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                             config=config)) == 0
    ckpt = str(run_folder(tmp_path / "runs") / "checkpoints/last.ckpt")
    assert session(config, ckpt, tmp_path / "m.mem", text) == 2
    assert "no fixed-size memory state" in caplog.text and not (tmp_path / "m.mem").exists()
