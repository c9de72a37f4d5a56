"""LightningCLI's --optimizer / --lr_scheduler on `ember fit`, and the trainer options that manual optimization
(EmberModel's truncated BPTT) cannot take: one line naming the option to use instead, exit status 2."""

import logging
import math

import pytest
import torch

from ember.optim import OptimizerChoice, configure, lr_at
from helpers import fit_args, run_cli, run_folder


def fit_checkpoint(tmp_path, *extra: str) -> dict:
    """A 3-step debug fit with `extra` options; its last checkpoint."""
    assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "3", *extra)) == 0
    return torch.load(run_folder(tmp_path) / "checkpoints/last.ckpt", weights_only=False)


@pytest.mark.slow
def test_the_default_is_adamw_with_the_lr_at_schedule(tmp_path):
    ckpt = fit_checkpoint(tmp_path)
    hp, (opt,), (sched,) = ckpt["hyper_parameters"], ckpt["optimizer_states"], ckpt["lr_schedulers"]
    matrices, vectors = opt["param_groups"]
    assert "betas" in matrices and (matrices["weight_decay"], vectors["weight_decay"]) == (hp["weight_decay"], 0.0)
    assert ckpt["global_step"] == sched["last_epoch"] == 3
    # the lr the next (4th) step would use, over a 3-step run
    assert sched["_last_lr"][0] == pytest.approx(hp["lr"] * lr_at(3, 3, hp["warmup_steps"], hp["min_lr_ratio"]))


@pytest.mark.slow
def test_optimizer_and_lr_scheduler_from_the_command_line(tmp_path):
    ckpt = fit_checkpoint(tmp_path, "--optimizer", "SGD", "--optimizer.lr", "0.01", "--optimizer.weight_decay",
                          "0.1", "--lr_scheduler", "CosineAnnealingLR", "--lr_scheduler.T_max", "100")
    (opt,), (sched,) = ckpt["optimizer_states"], ckpt["lr_schedulers"]
    matrices, vectors = opt["param_groups"]
    assert "momentum" in matrices and "betas" not in matrices  # SGD, not AdamW
    assert (matrices["weight_decay"], vectors["weight_decay"]) == (0.1, 0.0)  # still on matrices only
    assert sched["T_max"] == 100 and sched["last_epoch"] == ckpt["global_step"] == 3  # once per optimizer step
    assert matrices["lr"] == pytest.approx(0.01 * (1 + math.cos(math.pi * 3 / 100)) / 2)  # cosine at step 3


@pytest.mark.slow
def test_an_optimizer_alone_keeps_a_constant_lr(tmp_path):
    ckpt = fit_checkpoint(tmp_path, "--optimizer", "AdamW", "--optimizer.lr", "1e-3")
    (opt,) = ckpt["optimizer_states"]
    assert not ckpt["lr_schedulers"] and opt["param_groups"][0]["lr"] == 1e-3


@pytest.mark.parametrize(("option", "value", "instead"), [
    ("--trainer.gradient_clip_val", "0.5", "use --model.init_args.grad_clip 0.5 instead"),
    ("--trainer.accumulate_grad_batches", "2", "use a larger --data.init_args.batch_size instead"),
])
def test_trainer_options_of_automatic_optimization_are_refused_in_one_line(tmp_path, caplog, option, value,
                                                                            instead):
    with caplog.at_level(logging.ERROR, logger="ember"):
        assert run_cli(*fit_args(tmp_path, "--trainer.max_steps", "1", option, value)) == 2
    (error,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert instead in error and option in error and "\n" not in error


def test_configure_hands_a_chosen_scheduler_the_default_optimizer():
    """--lr_scheduler alone replaces the schedule and keeps the module's optimizer and weight-decay split."""
    module = torch.nn.Linear(3, 2)
    module.optimizer_choice = OptimizerChoice(lr_scheduler={"class_path": "torch.optim.lr_scheduler.StepLR",
                                                            "init_args": {"step_size": 2}})
    out = configure(module, lambda groups: torch.optim.AdamW(groups, lr=0.1), lambda opt: None, 0.01)
    assert isinstance(out["optimizer"], torch.optim.AdamW) and out["lr_scheduler"]["interval"] == "step"
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert [g["weight_decay"] for g in out["optimizer"].param_groups] == [0.01, 0.0]
