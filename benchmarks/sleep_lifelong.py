"""Sleep on a lifelong task (issue 31): days of open-vocabulary sessions lived with the memories on and the slow
weights frozen, a sleep after each day, and quizzes on every earlier day's facts with the memories off.

Per consolidator variant, from the same trained memory model:
  - before sleep: the memories-ON accuracy on the day's own sessions (the teacher's);
  - after each sleep: the memories-OFF accuracy on the quizzes of every day so far (what moved);
  - general text: bits/byte (memories on) on held-out general text before the first and after each sleep.
Prints and writes (under --out) a table, the per-day matrix as JSON and a plot of the quiz accuracy by day.

    python benchmarks/sleep_lifelong.py --config RUN/config.yaml --ckpt_path RUN/checkpoints/best.ckpt \\
        --out runs/sleep_lifelong [--days 10] [--variants replay_l2sp,naive,no_sleep]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from ember.cli.runs import load_trained
from ember.data_modules.lifelong import LifelongWorld
from ember.data_modules.recall import OpenRecall
from ember.metrics import answer_stats
from ember.ops.slot_memory import memories_off
from ember.plugins.consolidation.alignment import ReadoutAlignment
from ember.plugins.consolidation.anchors import EWC, L2SP
from ember.plugins.consolidation.replay import ReplayDistillation
from ember.sleep import Episode, bits_per_byte, general_sequences


def variants(args) -> dict:
    """The consolidators compared, by name (None: no sleep)."""
    replay = dict(steps=args.steps, lr=args.lr, batch_size=args.batch_size, general_ratio=args.general_ratio,
                  focus=args.focus, temperature=args.temperature, owns=args.owns.split(","),
                  memory_weight=args.memory_weight)
    return {"replay_l2sp": lambda: ReplayDistillation(anchor=L2SP(args.anchor_weight), **replay),
            "replay_ewc": lambda: ReplayDistillation(anchor=EWC(args.anchor_weight), **replay),
            "alignment": lambda: ReadoutAlignment(),
            "naive": lambda: ReplayDistillation(anchor=None, **{**replay, "general_ratio": 0.0}),
            "no_sleep": lambda: None}


def accuracy(model, examples: list, groups: int, memories: bool) -> tuple[np.ndarray, float]:
    """Exact-answer accuracy per group of `examples` and over all (teacher-forced, each from empty memories)."""
    right, answers = torch.zeros(groups), torch.zeros(groups)
    with torch.no_grad():
        for i in range(0, len(examples), 8):
            part = examples[i : i + 8]
            tokens = torch.from_numpy(np.stack([e.tokens for e in part]))
            if memories:
                logits = model.backbone(tokens[:, :-1]).logits
            else:
                with memories_off(model):
                    logits = model.backbone(tokens[:, :-1]).logits
            mask, answer_id, group = (torch.from_numpy(np.stack([getattr(e, name) for e in part]))
                                      for name in ("loss_mask", "answer_id", "group"))
            stats = answer_stats(logits.argmax(-1) == tokens[:, 1:], mask, answer_id, group, groups)
            right, answers = right + stats["right"], answers + stats["answers"]
    return (right / answers.clamp_min(1)).numpy(), float(right.sum() / answers.sum().clamp_min(1))


def general_split(path: str, count: int, length: int, out: Path) -> tuple[str, list[torch.Tensor]]:
    """The sleep's general text (out/general_train.txt: the first 90% of `path`) and `count` held-out sequences
    from the rest."""
    data = Path(path).read_bytes()
    cut = int(0.9 * len(data))
    train = out / "general_train.txt"
    train.write_bytes(data[:cut])
    held = torch.frombuffer(bytearray(data[cut:]), dtype=torch.uint8).long()
    step = (held.numel() - length - 1) // count
    return str(train), [held[i * step : i * step + length + 1] for i in range(count)]


def run_variant(name: str, make, base, world: LifelongWorld, general_path: str, held: list, args) -> dict:
    model = copy.deepcopy(base)
    consolidator = make()
    days, spd = world.days, world.sessions_per_day
    out = {"on_before": [], "quiz_off": [], "bpb": [bits_per_byte(model, held, memories=True)], "seconds": 0.0}
    buffer: list[torch.Tensor] = []
    start = time.perf_counter()
    for day in range(days):
        sessions = [world.session(day, k) for k in range(spd)]
        out["on_before"].append(accuracy(model, sessions, len(world.recall.delays), True)[1])
        buffer = (buffer + [torch.from_numpy(s.tokens) for s in sessions])[-args.buffer :]
        if consolidator is not None:
            general = general_sequences(general_path, args.general_sequences, 256, seed=day)
            consolidator.consolidate(model, [Episode(t) for t in buffer], general, seed=day)
        quizzes = [world.quiz(d, k) for d in range(day + 1) for k in range(spd)]
        out["quiz_off"].append(accuracy(model, quizzes, days, False)[0][: day + 1].tolist())
        out["bpb"].append(bits_per_byte(model, held, memories=True))
        print(f"  {name} day {day + 1}: on {out['on_before'][-1]:.3f}, quiz off {out['quiz_off'][-1]}", flush=True)
    out["seconds"] = time.perf_counter() - start
    return out


def summary(res: dict) -> dict:
    on, quiz = res["on_before"], res["quiz_off"]
    days = len(on)
    fresh = [quiz[d][d] for d in range(days)]  # each day's facts right after its sleep
    return {"on_before": float(np.mean(on)), "off_after_own_sleep": float(np.mean(fresh)),
            "transfer": float(np.mean(fresh) / max(np.mean(on), 1e-9)),
            "day1_after_1": quiz[0][0], "day1_after_last": quiz[-1][0],
            "day1_kept": quiz[-1][0] / quiz[0][0] if quiz[0][0] > 0 else float("nan"),
            "bpb_before": res["bpb"][0], "bpb_after": res["bpb"][-1],
            "bpb_rise": res["bpb"][-1] / res["bpb"][0] - 1, "seconds": res["seconds"]}


def plot(results: dict, path: Path):
    import matplotlib  # deferred: only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as matplotlib above

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, res in results.items():
        days = len(res["on_before"])
        left.plot(range(1, days + 1), [res["quiz_off"][d][d] for d in range(days)], marker="o", label=name)
        right.plot(range(1, days + 1), [q[0] for q in res["quiz_off"]], marker="o", label=name)
    left.plot(range(1, days + 1), next(iter(results.values()))["on_before"], "k--", label="memories ON, before")
    left.set(xlabel="day", ylabel="quiz accuracy, memories OFF", title="each day's facts after its sleep")
    right.set(xlabel="after day", ylabel="quiz accuracy, memories OFF", title="day 1's facts as days pass")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a trained memory run's config.yaml")
    p.add_argument("--ckpt_path", required=True, help="its checkpoint")
    p.add_argument("--out", required=True, help="folder for the table, the JSON and the plot")
    p.add_argument("--days", type=int, default=10, help="days (a sleep after each)")
    p.add_argument("--sessions", type=int, default=8, help="sessions a day")
    p.add_argument("--variants", default="replay_l2sp,naive,no_sleep", help="comma list of: replay_l2sp, "
                   "replay_ewc, alignment, naive, no_sleep")
    p.add_argument("--general", default="../shared/data/tinyshakespeare/input.txt", help="general text file")
    p.add_argument("--general_sequences", type=int, default=16, help="general-text sequences per sleep")
    p.add_argument("--held_out", type=int, default=32, help="held-out general sequences for bits/byte")
    p.add_argument("--steps", type=int, default=100, help="sleep steps (ReplayDistillation)")
    p.add_argument("--lr", type=float, default=1e-3, help="sleep learning rate")
    p.add_argument("--batch_size", type=int, default=4, help="sequences per sleep step")
    p.add_argument("--general_ratio", type=float, default=0.25, help="share of general text in the replay")
    p.add_argument("--temperature", type=float, default=1.0, help="softening of both distributions")
    p.add_argument("--memory_weight", type=float, default=1.0, help="weight of keeping the memories-ON model")
    p.add_argument("--owns", default="backbone.*", help="comma list of fnmatch patterns of the weights a sleep "
                   "may change")
    p.add_argument("--focus", type=float, default=1.0, help="share of each episode's tokens the KL reads")
    p.add_argument("--anchor_weight", type=float, default=1.0, help="L2SP / EWC weight")
    p.add_argument("--buffer", type=int, default=1000, help="replay buffer size in sessions")
    p.add_argument("--seed", type=int, default=0, help="seed of the world")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    base = load_trained(args.config, args.ckpt_path)
    recall = OpenRecall(window=16, delays=[4, 16], people=3, attributes=2, seq_len=768)
    world = LifelongWorld(recall, days=args.days, sessions_per_day=args.sessions, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    general_path, held = general_split(args.general, args.held_out, 256, out)
    table = variants(args)
    results = {name: run_variant(name, table[name], base, world, general_path, held, args)
               for name in args.variants.split(",")}
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    lines = ["| variant | ON before sleep | OFF after own sleep | transfer | day 1 after 1 / after last | kept | "
             "bpb before / after | rise | s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        s = summary(res)
        lines.append(f"| {name} | {s['on_before']:.3f} | {s['off_after_own_sleep']:.3f} | {s['transfer']:.2f} | "
                     f"{s['day1_after_1']:.3f} / {s['day1_after_last']:.3f} | {s['day1_kept']:.2f} | "
                     f"{s['bpb_before']:.3f} / {s['bpb_after']:.3f} | {100 * s['bpb_rise']:+.2f}% | "
                     f"{s['seconds']:.0f} |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    plot(results, out / "lifelong.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
