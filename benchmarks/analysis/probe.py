"""Linear probe of a frozen sensory encoder at few labels: how much a JEPA pre-training leaves in the features.

The binding runs (BENCHMARKS 7) fine-tune the encoder and the H-module together on the labelled
utterances, so what they measure mixes the encoder's features with how fast the H-module learns to
read them. This reads the features alone, as the self-supervised literature does at 1% labels: the
encoder of a binding config (random init, or the JEPA checkpoint its `checkpoint` option names) runs
frozen over the labelled training utterances and the test split; each utterance's tokens are averaged
over `--segments` equal spans of time and concatenated (so a linear read can compare the end of an
utterance with its start, where the question cue lies); then an L2-regularised logistic regression,
its penalty chosen by 5-fold cross-validation on the labelled utterances alone, is scored on the test
split. Everything is deterministic given the seeds.

    python benchmarks/analysis/probe.py --config configs/debug/binding.yaml --seeds 0,1,2 \\
        --data.init_args.tasks=[question] --data.init_args.train_size=8000 \\
        --data.init_args.label_fraction=0.01 --data.init_args.test_size=512 \\
        [--model.init_args.sensory.init_args.checkpoint JEPA_RUN/checkpoints/best.ckpt]

Each seed is passed as --seed_everything (the random init of the encoder; a checkpoint's encoder is the
same for every seed) and as --data.init_args.seed (which utterances are labelled, and the test split),
so the spread over seeds includes the choice of the few labels. It prints one line per seed and the
mean, in markdown.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from ember.cli.runs import build_cli, comma_list
from ember.errors import EmberConfigError

PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


@torch.no_grad()
def features(encoder, loader, segments: int) -> tuple[Tensor, Tensor]:
    """(N, segments * d) segment-mean tokens of every utterance, and the labels (N,)."""
    feats, labels = [], []
    for batch in loader:
        tokens = encoder(batch["signal"]).tokens  # (b, s, d)
        if tokens.shape[1] < segments:
            raise EmberConfigError(f"the encoder gives {tokens.shape[1]} tokens per utterance, fewer than "
                                   f"--segments {segments}: lower --segments")
        spans = torch.tensor_split(tokens, segments, dim=1)
        feats.append(torch.cat([span.mean(1) for span in spans], -1))
        labels.append(batch["label"])
    return torch.cat(feats).double(), torch.cat(labels)


def fit_logistic(x: Tensor, y: Tensor, classes: int, penalty: float) -> Tensor:
    """Weights (f + 1, classes) of a multinomial logistic regression with an L2 penalty on the weights
    (not the bias), minimised to convergence by L-BFGS; x is already standardised."""
    w = torch.zeros(x.shape[1] + 1, classes, dtype=x.dtype, requires_grad=True)
    xb = with_bias(x)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = F.cross_entropy(xb @ w, y) + penalty * w[:-1].pow(2).sum()
        value.backward()
        return value

    opt.step(loss)
    return w.detach()


def with_bias(x: Tensor) -> Tensor:
    """x (N, f) with a column of ones appended: (N, f + 1)."""
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def predict(w: Tensor, x: Tensor) -> Tensor:
    return (with_bias(x) @ w).argmax(-1)


def fit_and_predict(x: Tensor, y: Tensor, x_eval: Tensor, classes: int, penalty: float) -> Tensor:
    """Classes predicted for x_eval by a probe fitted on (x, y), both standardised by x's statistics."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    return predict(fit_logistic((x - mean) / std, y, classes, penalty), (x_eval - mean) / std)


def choose_penalty(x: Tensor, y: Tensor, classes: int, folds: int = 5) -> float:
    """The penalty of PENALTIES with the best cross-validated accuracy on (x, y); ties go to the larger one."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    parts = [order[i::folds] for i in range(folds)]
    scores = []
    for penalty in PENALTIES:
        right = 0
        for held in parts:
            keep = torch.ones(len(x), dtype=torch.bool)
            keep[held] = False
            right += (fit_and_predict(x[keep], y[keep], x[held], classes, penalty) == y[held]).sum().item()
        scores.append(right / len(x))
    best = max(scores)
    return max(p for p, s in zip(PENALTIES, scores) if s == best)


def probe(config: list[str], extra: list[str], segments: int) -> dict:
    """Test accuracy of the linear probe on one build of the config and its overlays (one seed)."""
    cli = build_cli(config, extra)
    encoder, data = getattr(cli.model, "sensory", None), cli.datamodule
    if encoder is None:
        raise EmberConfigError(f"{config[0]} has no sensory encoder (model.init_args.sensory): give a binding config")
    if len(data.task.tasks) != 1:
        raise EmberConfigError(f"the probe reads one prosody task, the config has {list(data.task.tasks)}: "
                               "set --data.init_args.tasks=[question] (or another single task)")
    encoder.eval()
    loader = lambda split: DataLoader(data.dataset(split), batch_size=64)  # noqa: E731
    x_train, y_train = features(encoder, loader("train"), segments)
    x_test, y_test = features(encoder, loader("test"), segments)
    classes = int(max(y_train.max(), y_test.max()).item()) + 1
    penalty = choose_penalty(x_train, y_train, classes)
    accuracy = (fit_and_predict(x_train, y_train, x_test, classes, penalty) == y_test).double().mean().item()
    return {"labels": len(y_train), "test": len(y_test), "penalty": penalty, "accuracy": accuracy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, action="append",
                        help="a binding config (EmberModel with a sensory encoder); again for overlays")
    parser.add_argument("--seeds", type=comma_list(int, "0,1,2"), default="0",
                        help="comma-separated seeds, each the init and the data seed of one probe (default 0)")
    parser.add_argument("--segments", type=int, default=4,
                        help="equal time spans whose mean tokens are concatenated into the features (default 4)")
    args, extra = parser.parse_known_args(argv)
    if args.segments < 1:
        parser.error("--segments must be >= 1")
    rows = []
    try:
        for seed in args.seeds:
            rows.append({"seed": seed, **probe(args.config, [*extra, "--seed_everything", str(seed),
                                                         "--data.init_args.seed", str(seed)], args.segments)})
    except (OSError, ValueError, RuntimeError, EmberConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("| seed | labelled | test | penalty | probe acc |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['labels']} | {r['test']} | {r['penalty']:g} | {r['accuracy']:.3f} |")
    mean = sum(r["accuracy"] for r in rows) / len(rows)
    print(f"| mean | | | | **{mean:.3f}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
