"""TinyRecursiveCore: the recursion equations, the carry of deep supervision, halting, EMA checkpoints."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader

from ember.errors import EmberConfigError
from ember.ops.recursion import deep_recursion, latent_recursion
from ember.plugins.reasoning.networks import AttentionNetwork, MixerNetwork
from ember.plugins.reasoning.trm import Carry, TinyRecursiveCore, fill_accuracy, halting_step
from helpers import load_script


def test_latent_recursion_follows_the_equations_by_hand():
    f = lambda h: 0.5 * h  # noqa: E731
    x, y, z = torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])
    y1, z1 = latent_recursion(f, x, y, z, n=2)
    # z <- 0.5 (1 + 2 + 4) = 3.5; z <- 0.5 (1 + 2 + 3.5) = 3.25; y <- 0.5 (2 + 3.25) = 2.625
    assert z1.item() == pytest.approx(3.25) and y1.item() == pytest.approx(2.625)


def test_deep_recursion_differentiates_only_the_last_cycle():
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    f = lambda h: torch.tanh(w * h)  # noqa: E731
    x, y, z = (torch.randn(3, dtype=torch.float64) for _ in range(3))
    y_deep, _ = deep_recursion(f, x, y, z, n=3, T=3)
    (grad_deep,) = torch.autograd.grad(y_deep.sum(), w)
    with torch.no_grad():  # the same T-1 cycles, detached by hand
        y2, z2 = latent_recursion(f, x, *latent_recursion(f, x, y, z, 3), 3)
    y_last, _ = latent_recursion(f, x, y2, z2, 3)
    (grad_last,) = torch.autograd.grad(y_last.sum(), w)
    assert torch.allclose(y_deep, y_last) and torch.allclose(grad_deep, grad_last)
    y_full, _ = latent_recursion(f, x, *latent_recursion(f, x, *latent_recursion(f, x, y, z, 3), 3), 3)
    (grad_full,) = torch.autograd.grad(y_full.sum(), w)
    assert not torch.allclose(grad_full, grad_deep)  # backprop through all cycles would differ


def test_one_step_gradient_differentiates_only_the_last_two_updates():
    w = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    f = lambda h: torch.tanh(w * h)  # noqa: E731
    x, y, z = (torch.randn(3, dtype=torch.float64) for _ in range(3))
    y_one, z_one = deep_recursion(f, x, y, z, n=3, T=2, one_step_gradient=True)
    (grad_one,) = torch.autograd.grad(y_one.sum(), w)
    with torch.no_grad():  # a cycle and two latent updates, detached by hand
        y1, z1 = latent_recursion(f, x, y, z, 3)
        z1 = f(x + y1 + f(x + y1 + z1))
    z_last = f(x + y1 + z1)
    y_last = f(y1 + z_last)
    (grad_last,) = torch.autograd.grad(y_last.sum(), w)
    assert torch.allclose(y_one, y_last) and torch.allclose(z_one, z_last) and torch.allclose(grad_one, grad_last)
    y_cycle, _ = deep_recursion(f, x, y, z, n=3, T=2)
    (grad_cycle,) = torch.autograd.grad(y_cycle.sum(), w)
    assert torch.allclose(y_cycle, y_one) and not torch.allclose(grad_cycle, grad_one)  # same values, less gradient


@pytest.mark.parametrize("network", [partial(MixerNetwork, layers=2), partial(AttentionNetwork, layers=2, heads=4),
                                     partial(AttentionNetwork, layers=2, heads=4, norm="pre"),
                                     partial(AttentionNetwork, layers=2, heads=4, positions="2d")])
def test_networks_map_b_s_d_to_b_s_d_and_mix_positions(network):
    torch.manual_seed(0)
    f = network(32, 9)
    h = torch.randn(2, 9, 32)
    out = f(h)
    assert out.shape == h.shape and torch.isfinite(out).all()
    h2 = h.clone()
    h2[:, 0] += 1.0
    assert not torch.allclose(f(h2)[:, 5], out[:, 5])  # position 5 sees position 0


def test_attention_network_refuses_odd_head_width_and_unknown_norm():
    with pytest.raises(EmberConfigError, match="heads"):
        AttentionNetwork(30, 9, heads=4)
    with pytest.raises(EmberConfigError, match="'post'"):
        AttentionNetwork(32, 9, heads=4, norm="sandwich")


def test_2d_rotary_positions_see_row_and_column_offsets_and_no_wrap_around():
    from ember.ops.rope import apply_rope
    from ember.plugins.reasoning.networks import rotary_tables

    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 8)  # one head of width 8
    side = 5

    def score(positions: str, a: tuple[int, int], b: tuple[int, int]) -> float:
        cos, sin = rotary_tables(side * side, 8, positions)
        i, j = a[0] * side + a[1], b[0] * side + b[1]
        return (apply_rope(q, cos[i:i + 1], sin[i:i + 1]) * apply_rope(k, cos[j:j + 1], sin[j:j + 1])).sum().item()

    for offset in ((0, 1), (1, 0), (2, -1)):  # the same (row, column) offset from two places: the same score
        here, there = ((r + offset[0], c + offset[1]) for r, c in ((1, 1), (2, 3)))
        assert abs(score("2d", (1, 1), here) - score("2d", (2, 3), there)) < 1e-5
    right_neighbour = score("1d", (0, 0), (0, 1))
    wrapped = score("1d", (0, 4), (1, 0))  # end of a row, start of the next: one apart in the flat sequence
    assert abs(right_neighbour - wrapped) < 1e-5
    assert abs(score("2d", (0, 0), (0, 1)) - score("2d", (0, 4), (1, 0))) > 0.1
    small, large = AttentionNetwork(32, 9, heads=4, positions="2d"), AttentionNetwork(32, 25, heads=4, positions="2d")
    large.load_state_dict(small.state_dict())  # no weight depends on the grid size
    with pytest.raises(EmberConfigError, match="square seq_len"):
        AttentionNetwork(32, 10, heads=4, positions="2d")
    with pytest.raises(EmberConfigError, match="divisible by 4"):
        AttentionNetwork(24, 9, heads=4, positions="2d")  # head width 6
    with pytest.raises(EmberConfigError, match="'1d'"):
        AttentionNetwork(32, 9, heads=4, positions="3d")


def test_pre_norm_blocks_are_the_same_weights_wired_differently():
    torch.manual_seed(0)
    post = AttentionNetwork(32, 9, layers=1, heads=4)
    pre = AttentionNetwork(32, 9, layers=1, heads=4, norm="pre")
    pre.load_state_dict(post.state_dict())
    h = torch.randn(2, 9, 32)
    a = post.attend(0, h)
    h1 = post.norm(h + a)
    assert torch.allclose(post(h), post.norm(h1 + post.mlps[0](h1)), atol=1e-6)
    r = h + pre.attend(0, pre.norm(h))
    assert torch.allclose(pre(h), pre.norm(r + pre.mlps[0](pre.norm(r))), atol=1e-6)
    assert not torch.allclose(pre(h), post(h), atol=1e-3)


def _core(**kw) -> TinyRecursiveCore:
    torch.manual_seed(0)
    args = dict(vocab_size=6, seq_len=8, d_model=16, network=partial(MixerNetwork, layers=1), T=2, n=2, n_sup=3)
    return TinyRecursiveCore(**{**args, **kw})


def test_init_from_starts_a_new_recipe_from_a_checkpoints_weights(tmp_path):
    torch.manual_seed(1)
    trained = TinyRecursiveCore(vocab_size=6, seq_len=8, d_model=16, network=partial(MixerNetwork, layers=1),
                                T=2, n=2, n_sup=1)  # other initial weights than _core's seed
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "one_step.ckpt")
    core = _core(n_sup=16, init_from=str(tmp_path / "one_step.ckpt"))
    assert not torch.equal(core.y_init, trained.y_init)
    core.setup("fit")
    for name, value in trained.state_dict().items():
        assert torch.equal(core.state_dict()[name], value), name
    assert core.hparams.n_sup == 16  # the new recipe's, where a resume would restore the checkpoint's 1
    with pytest.raises(EmberConfigError, match="model.init_args.init_from=.*does not exist"):
        _core(init_from=str(tmp_path / "missing.ckpt")).setup("fit")


def test_refill_replaces_halted_puzzles_and_keeps_the_others():
    core = _core()
    old_in, new_in = torch.ones(3, 8, dtype=torch.long), torch.full((3, 8), 2)
    y = torch.randn(3, 8, 16)
    core._carry = Carry(old_in, old_in, y, y + 1, torch.tensor([2, 3, 1]), torch.tensor([False, True, False]))
    carry = core.refill(new_in, new_in)
    assert carry.inputs[:, 0].tolist() == [1, 2, 1] and carry.steps.tolist() == [2, 0, 1]
    assert torch.equal(carry.y[0], y[0]) and torch.equal(carry.y[1], core.y_init.expand(8, 16))
    assert not carry.halted.any()


def test_training_step_halts_every_puzzle_at_n_sup():
    core = _core(halt_explore=0.0)
    batch = {"inputs": torch.randint(1, 6, (4, 8)), "labels": torch.randint(1, 6, (4, 8))}
    for step in range(1, 4):
        core.training_step(batch, 0)
        assert core._carry.steps.tolist() == [step] * 4
    assert core._carry.halted.all()  # n_sup = 3 reached (the halting head starts at logit -5)
    core.training_step(batch, 0)
    assert core._carry.steps.tolist() == [1] * 4  # fresh puzzles took their place


def test_n_sup_warmup_halts_every_puzzle_after_one_step_until_its_last_step(monkeypatch):
    core = _core(n_sup=3, n_sup_warmup=2, halt_explore=1.0)  # exploration would otherwise hold puzzles longer
    now = {"step": 0}
    monkeypatch.setattr(TinyRecursiveCore, "global_step", property(lambda self: now["step"]))
    batch = {"inputs": torch.randint(1, 6, (4, 8)), "labels": torch.randint(1, 6, (4, 8))}
    for step, (steps, halted) in enumerate([(1, True), (1, True), (1, False), (2, False), (3, True)]):
        now["step"] = step
        core.training_step(batch, 0)
        assert core._carry.steps.tolist() == [steps] * 4 and core._carry.halted.tolist() == [halted] * 4, step
    with pytest.raises(EmberConfigError, match="n_sup_warmup=-1"):
        _core(n_sup_warmup=-1)


@pytest.mark.parametrize("T, n", [(2, 2), (1, 1)])  # the one-step and single-pass ablations
def test_one_supervision_step_halts_every_puzzle_even_when_exploring(T, n):
    core = _core(T=T, n=n, n_sup=1, halt_explore=1.0)
    batch = {"inputs": torch.randint(1, 6, (4, 8)), "labels": torch.randint(1, 6, (4, 8))}
    for _ in range(2):
        core.training_step(batch, 0).backward()
        assert core._carry.halted.all() and core._carry.steps.tolist() == [1] * 4


def test_think_reads_the_answer_where_the_halting_head_fires():
    core = _core()
    with torch.no_grad():
        core.halt_head.bias.fill_(5.0)  # fires at once
    thought = core.think(torch.randint(1, 6, (2, 8)), steps=4)
    assert thought.halt_step.tolist() == [1, 1]
    with torch.no_grad():
        core.halt_head.bias.fill_(-5.0)  # never fires: the answer after all steps
    thought = core.think(torch.randint(1, 6, (2, 8)), steps=4)
    assert thought.halt_step.tolist() == [4, 4] and torch.equal(thought.preds, thought.final_preds)


@pytest.mark.parametrize(("halt_prob", "halt_step"), [(0.5, 1), (0.95, 4)])
def test_think_halts_only_above_halt_prob(halt_prob, halt_step):
    core = _core(halt_prob=halt_prob)
    with torch.no_grad():
        core.halt_head.bias.fill_(2.0)  # halting probability sigmoid(2) = 0.88 at every step
    assert core.think(torch.randint(1, 6, (2, 8)), steps=4).halt_step.tolist() == [halt_step] * 2


def test_halting_step_reads_the_first_confident_step_else_the_most_confident_one():
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    halt = torch.tensor([[logit(0.2), logit(0.97), logit(0.99), logit(0.5)],  # fires at step 2
                         [logit(0.2), logit(0.9), logit(0.6), logit(0.3)],  # never above 0.95: most confident, 2
                         [logit(0.4), logit(0.4), logit(0.4), logit(0.4)]])  # all equal: the last step
    read, used = halting_step(halt, 0.95)
    assert read.tolist() == [1, 1, 3] and used.tolist() == [2, 4, 4]  # the unsure ones ran every step
    read, used = halting_step(halt, 0.5)
    assert read.tolist() == [1, 1, 3] and used.tolist() == [2, 2, 4]
    assert halting_step(halt, 0.1)[0].tolist() == [0, 0, 0]


def test_fill_accuracy_scores_only_the_cells_the_answer_changes():
    inputs = torch.tensor([[1, 2, 2, 2], [1, 1, 2, 3]])  # two mazes: walls 1, open 2, path 5 in the labels
    labels = torch.tensor([[1, 5, 5, 2], [1, 1, 5, 3]])  # three path cells to fill
    preds = torch.tensor([[2, 5, 2, 5], [1, 1, 5, 3]])  # the wall and the open cell wrong: not counted
    assert fill_accuracy(preds, inputs, labels).item() == pytest.approx(2 / 3)
    assert fill_accuracy(labels, inputs, labels).item() == 1.0
    assert fill_accuracy(inputs, inputs, inputs).item() == 0.0  # nothing to fill


@pytest.mark.parametrize("halt_prob", [0.0, 1.0, 1.5])
def test_halt_prob_outside_0_1_is_refused(halt_prob):
    with pytest.raises(EmberConfigError, match="halt_prob"):
        _core(halt_prob=halt_prob)


def test_composite_forward_returns_answer_tokens_and_probabilities():
    out = _core()(torch.randn(2, 8, 16))
    assert out.answer.shape == (2, 8, 16) and out.halt.shape == (2,) and out.more_sensing.shape == (2,)
    assert ((out.halt >= 0) & (out.halt <= 1)).all()


class ReversalPuzzles(LightningDataModule):
    """A puzzle any tiny network can learn: the label is the input reversed."""

    vocab_size, seq_len = 6, 8

    def _loader(self, n: int, seed: int, train: bool):
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(1, 6, (n, 8), generator=g)
        return DataLoader([{"inputs": a, "labels": a.flip(0)} for a in x], batch_size=16, shuffle=train,
                          drop_last=train)

    def train_dataloader(self):
        return self._loader(512, 0, True)

    def val_dataloader(self):
        return self._loader(32, 1, False)


def _val_loss(core: TinyRecursiveCore, data: ReversalPuzzles) -> float:
    batch = next(iter(data.val_dataloader()))
    logits = core.think(batch["inputs"], core.eval_steps).final_logits
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"]).item()


def test_fit_lowers_the_loss_and_checkpoints_ema_weights_and_the_halting_head(tmp_path):
    core, data = _core(lr=3e-3, warmup_steps=5, weight_decay=0.1), ReversalPuzzles()
    before = _val_loss(core, data)
    trainer = Trainer(max_steps=60, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0,
                      callbacks=[EMAWeightAveraging(decay=0.9), ModelCheckpoint(dirpath=tmp_path, save_last=True)])
    trainer.fit(core, data)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    name = "net.channel_mlps.0.up.weight"
    assert "halt_head.weight" in saved["state_dict"] and "current_model_state" in saved
    assert not torch.equal(saved["state_dict"][name], saved["current_model_state"][name])  # the average is saved
    restored = _core()
    restored.load_state_dict(saved["state_dict"])
    assert torch.equal(restored.halt_head.weight, saved["state_dict"]["halt_head.weight"])
    assert _val_loss(restored, data) < before - 0.2  # the EMA weights learned the task

    raw_weights = load_script("benchmarks/analysis/raw_weights.py")  # the no-EMA ablation scores the trained weights
    assert raw_weights.main([str(tmp_path / "last.ckpt"), str(tmp_path / "raw.ckpt")]) == 0
    raw = torch.load(tmp_path / "raw.ckpt", weights_only=False)
    assert torch.equal(raw["state_dict"][name], saved["current_model_state"][name])
    assert "current_model_state" not in raw and "averaging_state" not in raw
    assert raw_weights.main([str(tmp_path / "raw.ckpt"), str(tmp_path / "again.ckpt")]) == 2  # no EMA in it
    assert not (tmp_path / "again.ckpt").exists()


def test_debug_sudoku_config_learns_and_ember_test_reloads_the_ema_checkpoint(tmp_path, caplog, capsys):
    from helpers import ROOT, fit_args, mlflow_rows, run_cli, run_folder

    config = str(ROOT / "configs/debug/sudoku.yaml")
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "40", "--trainer.val_check_interval", "20",
                             "--trainer.log_every_n_steps", "1", config=config)) == 0
    ce = [v for (v,) in mlflow_rows(tmp_path, "select value from metrics where key='train/ce' order by step")]
    assert sum(ce[-5:]) / 5 < sum(ce[:5]) / 5 - 0.3  # cross-entropy falls
    folder = run_folder(tmp_path)
    saved = torch.load(folder / "checkpoints/last.ckpt", weights_only=False)
    assert "halt_head.weight" in saved["state_dict"] and "current_model_state" in saved  # EMA + raw weights
    caplog.clear()
    assert run_cli("test", "--config", str(folder / "config.yaml"), "--ckpt_path",
                   str(folder / "checkpoints/last.ckpt"), "--model.init_args.eval_steps", "5",
                   "--model.init_args.n_sup", "7", "--trainer.logger.init_args.run_dir", str(tmp_path / "test")) == 0
    assert "more than the n_sup=3 trained" in caplog.text
    assert "model.init_args.n_sup: 7 -> 3" in caplog.text  # the checkpoint's hyper-parameter won, and we said so
    metrics = {k for (k,) in mlflow_rows(tmp_path / "test", "select distinct key from metrics")}
    assert {"test/exact_acc", "test/cell_acc", "test/fill_acc", "test/steps"} <= metrics

    halting = load_script("benchmarks/analysis/halting.py")  # the thinking curve and thresholds from one pass
    assert halting.main(["--config", str(folder / "config.yaml"), "--ckpt_path", str(folder / "checkpoints/last.ckpt"),
                         "--split", "val", "--steps", "4", "--halt-probs", "0.5,0.95"]) == 0
    out = capsys.readouterr().out
    assert "| after step | 1 | 2 | 3 | 4 |" in out and "| 0.95 |" in out and "| cells to fill, right | " in out

    show = load_script("benchmarks/analysis/show_thinking.py")  # pictures of the answers after chosen steps
    picture = tmp_path / "pictures" / "thinking.png"
    assert show.main(["--config", str(folder / "config.yaml"), "--ckpt_path", str(folder / "checkpoints/last.ckpt"),
                      "--puzzles", "2", "--show", "1,3", "--out", str(picture)]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(picture.parent.glob(".*.tmp"))


def test_halting_table_scores_each_step_and_each_threshold():
    halting = load_script("benchmarks/analysis/halting.py")
    right = torch.tensor([[False, True, True], [False, False, True]])
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    halts = torch.tensor([[logit(0.6), logit(0.99), logit(0.99)], [logit(0.7), logit(0.8), logit(0.9)]])
    text = halting.table(right, halts, [0.5, 0.95])
    assert "| exact | 0.000 | 0.500 | 1.000 |" in text and "cells to fill" not in text
    assert "| cells to fill, right | 0.250 | 1.000 |" in halting.table(right[:, :2], halts[:, :2], [0.5],
                                                                      torch.tensor([0.25, 1.0]))
    assert "| 0.5 | 0.000 | 1.00 | 1.00 | 1.000 | 0.000 |" in text  # both read at step 1, where both are wrong
    # step 2 (fires, right), step 3 (never fires: the most confident); half the heads fire, all right
    assert "| 0.95 | 1.000 | 2.50 | 2.50 | 0.500 | 1.000 |" in text
    # both solved by some step and still right at the last; every right answer's logit (0.9, 0.99) is above
    # every wrong one's (0.6, 0.7, 0.8)
    assert "solved at some step: 1.000; of those, wrong after the last step: 0.000" in text
    assert "AUROC (right vs wrong answers, every step): 1.000" in text
    lost = halting.table(torch.tensor([[True, False], [False, False]]), torch.zeros(2, 2), [0.5])
    assert "solved at some step: 0.500; of those, wrong after the last step: 1.000" in lost
    assert "AUROC (right vs wrong answers, every step): 0.500" in lost  # a head that never changes ranks nothing


def test_ember_ablate_runs_the_trm_ablations_on_puzzles(tmp_path):
    from helpers import ROOT, mlflow_rows, run_cli

    config, ablate = str(ROOT / "configs/debug/sudoku.yaml"), ROOT / "configs/ablate"
    variants = [f"{name}={ablate / file}" for name, file in [("single_pass", "trm_single_pass.yaml"),
                ("one_step", "trm_one_step.yaml"), ("grad1", "trm_1step_gradient.yaml")]]
    assert run_cli("ablate", "--config", config, "--variant", "trm=", *[a for v in variants for a in ("--variant", v)],
                   "--out", str(tmp_path), "--set=--trainer.max_steps=2", "--set=--trainer.val_check_interval=2") == 0
    rows = {r["variant"]: r for r in json.loads((tmp_path / "ablation.json").read_text())["rows"]}
    assert list(rows) == ["trm", "single_pass", "one_step", "grad1"]
    assert all(r["state_bytes"] is None and "test/exact_acc" in r for r in rows.values())  # no stream state
    assert rows["single_pass"]["test/steps"] == 1.0 and rows["trm"]["test/steps"] == 3.0  # n_sup of each variant
    trm = Path(rows["trm"]["checkpoint"]).parent.parent  # the run folder
    assert run_cli("test", "--config", str(trm / "config.yaml"), "--ckpt_path", rows["trm"]["checkpoint"],
                   "--trainer.logger.init_args.run_dir", str(tmp_path / "test")) == 0
    (loss,) = mlflow_rows(tmp_path / "test", "select value from metrics where key='test/loss'")[0]
    assert loss == pytest.approx(rows["trm"]["test/loss"], rel=1e-5)  # the EMA weights, as `ember test` scores them


def test_show_thinking_colours_maze_cells_by_how_the_answer_compares():
    from ember.data_modules.maze import GOAL, OPEN, PATH, START, WALL

    show = load_script("benchmarks/analysis/show_thinking.py")
    inputs = torch.tensor([START, OPEN, OPEN, WALL, WALL, OPEN, WALL, OPEN, GOAL])  # 3x3, path along the edge
    labels = torch.tensor([START, PATH, PATH, WALL, WALL, PATH, WALL, OPEN, GOAL])
    answer = torch.tensor([START, PATH, OPEN, WALL, WALL, PATH, WALL, PATH, GOAL])  # misses cell 2, marks cell 7
    image = show.maze_image(inputs.numpy(), labels.numpy(), answer.numpy()).reshape(9, 3)
    colours = [tuple(float(v) for v in pixel) for pixel in image]
    assert colours[1] == colours[5] == show.RIGHT and colours[2] == show.MISSED and colours[7] == show.WRONG
    assert colours[3] == colours[4] == colours[6] == (0.2, 0.2, 0.2)  # walls
    truth = show.maze_image(inputs.numpy(), labels.numpy(), None).reshape(9, 3)
    assert [tuple(float(v) for v in truth[i]) for i in (1, 2, 5)] == [show.RIGHT] * 3  # the solution's path

    puzzles = {"inputs": inputs[None], "labels": labels[None], "step_preds": torch.stack([answer, labels])[None],
               "halt_logits": torch.tensor([[-3.0, 3.0]]), "read": torch.tensor([1])}
    fig = show.figure(puzzles, [1, 2], show.draw_maze, "test")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["puzzle and solution; read at step 2", "step 1: p(halt) 0.05, 2 wrong",
                      "step 2: p(halt) 0.95, exact"]
    frames = [ax.spines["top"].get_linewidth() for ax in fig.axes]
    assert frames[2] == 4 and frames[1] < 4  # the step read


def test_halting_script_refuses_a_config_that_is_not_a_trm(tmp_path, capsys):
    from helpers import ROOT

    halting = load_script("benchmarks/analysis/halting.py")
    assert halting.main(["--config", str(ROOT / "configs/debug/quickstart.yaml"),
                         "--ckpt_path", str(tmp_path / "none.ckpt")]) == 2
    assert "not a TinyRecursiveCore" in capsys.readouterr().err


@pytest.mark.parametrize("halt_probs, message", [("0.5,x", "give comma-separated values such as 0.5,0.9,0.95"),
                                                 ("0.5,1.5", "must be in (0, 1)")])
def test_halting_script_refuses_bad_thresholds_before_loading_anything(halt_probs, message, capsys):
    halting = load_script("benchmarks/analysis/halting.py")
    with pytest.raises(SystemExit) as exit_:
        halting.main(["--config", "missing.yaml", "--ckpt_path", "missing.ckpt", "--halt-probs", halt_probs])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_maze_plateau_yardsticks_score_what_each_window_decides():
    import numpy as np

    from ember.data_modules.maze import OPEN, PATH, WALL, generate_mazes

    script = load_script("benchmarks/reproduce/maze_plateau.py")
    cross = np.array([[WALL, OPEN, WALL, OPEN, OPEN, OPEN, WALL, OPEN, WALL]], np.uint8)  # a plus sign, 3x3
    assert script.open_neighbours(cross, 3).tolist() == [[5, 1, 5, 1, 4, 1, 5, 1, 5]]
    # a coin flip per open cell: the token-only table scores ln 2, whatever it is given
    rng = np.random.default_rng(0)
    coins = lambda: (np.full((50, 9), OPEN, np.uint8), np.where(rng.random((50, 9)) < 0.5, PATH, OPEN))  # noqa: E731
    assert abs(script.lookup_entropy(coins(), coins(), 3, 0) - math.log(2)) < 0.02
    # the degree labels are a function of the 3x3 window: that table all but solves them, the cell's own token cannot
    train, held = (generate_mazes(k, seed=s, size=7, min_path=6) for k, s in ((200, 0), (50, 1)))
    degree = lambda m: (m.inputs, script.open_neighbours(m.inputs, 7))  # noqa: E731
    own, window = (script.lookup_entropy(degree(train), degree(held), 7, r) for r in (0, 1))
    assert window < 0.05 and own > 0.25


def test_maze_ties_counts_forks_and_scores_each_turned_rule(tmp_path, capsys):
    import numpy as np

    from ember.data_modules import maze

    script = load_script("benchmarks/reproduce/maze_ties.py")
    room = np.full(9, maze.OPEN, np.uint8)  # 3x3 open room, S top-left, G bottom-right: path 0, 3, 6, 7, 8
    room[0], room[8] = maze.START, maze.GOAL
    label = maze.label_path(room, maze.shortest_path(room, 3)[0])
    assert script.forks(room, label, 3) == 2  # down or right at cells 0 and 3; cells 6 and 7 can only go right
    assert all(np.array_equal(maze.dihedral(maze.dihedral(room, k), script.INVERSE[k]), room) for k in range(8))
    data = maze.generate_mazes(6, seed=0, size=10, min_path=14, style="open")
    file = tmp_path / "open.csv"
    text = lambda grid: "".join(maze.CHARS[t - 1] for t in grid)  # noqa: E731
    file.write_text("question,answer\n" + "".join(f"{text(x)},{text(y)}\n" for x, y in zip(*data)))
    script.main([str(file), "--size", "10"])
    out = capsys.readouterr().out
    assert "reproduces: 6 of 6 (1.000)" in out and "k=0: 6 of 6 (1.000)" in out


def test_maze_answers_tell_a_tie_break_miss_from_a_wrong_path():
    import numpy as np

    from ember.data_modules import maze

    script = load_script("benchmarks/analysis/maze_answers.py")
    room = np.full(9, maze.OPEN, np.uint8)  # 3x3 open room, S top-left, G bottom-right
    room[0], room[8] = maze.START, maze.GOAL
    label = maze.label_path(room, [0, 3, 6, 7, 8])  # down first: the rule's path
    other = maze.label_path(room, [0, 1, 2, 5, 8])  # right first: as short, another tie-break
    detour = label.copy()
    detour[4] = maze.PATH  # one cell too many
    inputs, labels = np.stack([room] * 4), np.stack([label] * 4)
    shares = script.sort_answers(inputs, labels, np.stack([label, other, detour, room]), 3)
    assert shares == {"exact": 0.25, "another shortest path": 0.25, "not a shortest path": 0.5,
                      "wrong cells where not": 2.0}  # the detour has 1 wrong cell, the copy 3
