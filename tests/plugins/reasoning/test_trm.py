"""TinyRecursiveCore: the carry of deep supervision, halting, init_from, a fit with EMA checkpoints, and the
debug sudoku config end to end."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader

from ember.errors import EmberConfigError
from ember.plugins.reasoning.networks import MixerNetwork
from ember.plugins.reasoning.trm import Carry, TinyRecursiveCore, fill_accuracy, halting_step
from helpers import load_script


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


def test_the_loss_adds_the_halting_bce_on_whether_each_answer_is_right():
    """Puzzle 0 answered right, puzzle 1 wrong in one cell; halting logits 0.3 and -0.2. The loss is the cross-
    entropy plus halt_weight * mean(-log sigmoid(0.3), -log(1 - sigmoid(-0.2))), and only puzzle 0 halts."""
    core = _core(halt_explore=0.0, halt_weight=0.5)
    labels = torch.randint(1, 6, (2, 8))
    answers = labels.clone()
    answers[1, 0] = labels[1, 0] % 5 + 1  # another token
    logits = 4.0 * torch.nn.functional.one_hot(answers, 6).float()
    halt = torch.tensor([0.3, -0.2])
    core.supervision_step = lambda x, y, z: (y, z, logits, halt)
    loss = core.training_step({"inputs": labels, "labels": labels}, 0)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels)
    bce = (math.log1p(math.exp(-0.3)) + math.log1p(math.exp(-0.2))) / 2
    assert loss.item() == pytest.approx(ce.item() + 0.5 * bce)
    assert core._carry.halted.tolist() == [True, False]


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
    core = _core()
    with torch.no_grad():  # constant heads: halting logit 0.3, "more sensing?" logit -0.7
        core.halt_head.bias.fill_(0.3)
        core.sense_head.weight.zero_()
        core.sense_head.bias.fill_(-0.7)
    out = core(torch.randn(2, 8, 16))
    assert out.answer.shape == (2, 8, 16)
    torch.testing.assert_close(out.halt, torch.full((2,), 1 / (1 + math.exp(-0.3))))
    torch.testing.assert_close(out.more_sensing, torch.full((2,), 1 / (1 + math.exp(0.7))))


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


@pytest.mark.slow
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


@pytest.mark.slow
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
