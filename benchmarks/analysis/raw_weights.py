"""The no-EMA ablation without a second training run: write the raw weights of a checkpoint trained
under Lightning's EMAWeightAveraging as a checkpoint of their own, for `ember test`.

EMAWeightAveraging never changes training: it keeps an average beside the trained weights, swaps it
in for validation, and saves it as the checkpoint's `state_dict` with the trained weights under
`current_model_state`. A run trained without the callback (configs/ablate/trm_no_ema.yaml) follows
the same trajectory from the same seed, so its weights at step N are this run's raw weights at
step N; scoring both from one run compares the same training with and without the average.

    python benchmarks/analysis/raw_weights.py RUN/checkpoints/last.ckpt RUN/checkpoints/last_raw.ckpt
    ember test --config RUN/config.yaml --config configs/ablate/trm_no_ema.yaml \\
        --ckpt_path RUN/checkpoints/last_raw.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ember.files import atomic_path, load_checkpoint


def raw_checkpoint(checkpoint: dict) -> dict:
    """The checkpoint with its trained (not averaged) weights as the state_dict and no averaging state."""
    if "current_model_state" not in checkpoint:
        raise ValueError("the checkpoint holds no current_model_state: it was not saved during a fit under "
                         "EMAWeightAveraging, so its state_dict already is the raw weights")
    raw = {k: v for k, v in checkpoint.items() if k not in ("current_model_state", "averaging_state")}
    raw["state_dict"] = checkpoint["current_model_state"]
    return raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a checkpoint saved by a fit with EMAWeightAveraging")
    parser.add_argument("out", type=Path, help="where to write the raw-weights checkpoint (written atomically)")
    args = parser.parse_args(argv)
    if args.out.resolve() == args.checkpoint.resolve():
        parser.error("out must differ from checkpoint: the averaged weights would be lost")
    try:
        raw = raw_checkpoint(load_checkpoint(args.checkpoint))
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {args.checkpoint}: {err}", file=sys.stderr)
        return 2
    with atomic_path(args.out) as tmp:
        torch.save(raw, tmp)
    print(f"wrote the raw weights of {args.checkpoint} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
