"""Planted-bug check: does the test suite catch realistic bugs in the core math?

Each mutation below is one small, realistic edit (off by one, a flipped sign, a dropped term or detach, swapped
arguments) to ember/ops or to a memory, TRM or LIF update rule. For each, the test files mapped to the mutated file
run with the mutated text in place (`pytest -x -m "not slow"`): a failing run kills the mutant, a passing one lets it
survive, and the kill rate is the share killed. The unmutated tests run first; if they fail there is nothing to
measure and the script stops.

The source files are never written. Each run is its own Python process whose import hook compiles the mutated text
under the real file name, so an interrupted run leaves the tree as it was and other processes working in the same
tree meanwhile see the real code.

    python benchmarks/mutation.py                 # every mutation (make mutate)
    python benchmarks/mutation.py --list          # names, files and mapped tests, nothing run
    python benchmarks/mutation.py --only lif.leak_one_minus_beta,trm.halt_target_inverted --slow
    python benchmarks/mutation.py --out mutation.json

Exit status: 0 when the kill rate reaches --min-kill-rate, 1 below it, 2 when the unmutated tests fail or a
mutation's snippet is no longer in its file (tests/test_mutation.py keeps the list in step with the code).
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"ember/": "ember.", "plugins/": "ember.plugins."}  # pyproject's package-dir, for the files mutated

MEMORY_TESTS = ("tests/ops/test_plasticity.py", "tests/ops/test_slot_memory.py",
                "tests/plugins/memory/test_episodic.py", "tests/plugins/memory/test_procedural.py")
TESTS = {  # the test files that run against a mutant of each file
    "ember/ops/scan.py": ("tests/ops/test_scan.py",),
    "ember/ops/lif.py": ("tests/ops/test_lif.py",),
    "ember/ops/plasticity.py": MEMORY_TESTS,
    "ember/ops/slot_memory.py": MEMORY_TESTS,
    "plugins/memory/episodic.py": MEMORY_TESTS,
    "plugins/memory/procedural.py": MEMORY_TESTS,
    "ember/ops/recursion.py": ("tests/ops/test_recursion.py", "tests/plugins/reasoning/test_trm.py"),
    "plugins/reasoning/trm.py": ("tests/plugins/reasoning/test_trm.py",),
    "ember/ops/jepa.py": ("tests/ops/test_jepa.py", "tests/plugins/sensory/test_audio_jepa.py"),
    "ember/ops/filterbank.py": ("tests/ops/test_filterbank.py",),
    "ember/ops/rope.py": ("tests/ops/test_rope.py", "tests/ops/test_attention.py"),
    "ember/ops/attention/reference.py": ("tests/ops/test_attention.py",),
    "ember/ops/attention/blocked.py": ("tests/ops/test_attention.py",),
    "ember/ops/attention/window.py": ("tests/ops/test_attention.py",),
}


@dataclass(frozen=True)
class Mutation:
    """Replace `old` (found exactly once in `file`, relative to the repository root) by `new`."""

    name: str
    file: str
    old: str
    new: str


_m = Mutation  # a short name for the table below


SCAN, LIF, PLAST, SLOTS = "ember/ops/scan.py", "ember/ops/lif.py", "ember/ops/plasticity.py", "ember/ops/slot_memory.py"
EM, PM, TRM, REC = "plugins/memory/episodic.py", "plugins/memory/procedural.py", "plugins/reasoning/trm.py", \
    "ember/ops/recursion.py"
JEPA, MEL, ROPE = "ember/ops/jepa.py", "ember/ops/filterbank.py", "ember/ops/rope.py"
ATT = "ember/ops/attention/"

MUTATIONS = [
    # scan: h_t = a_t h_{t-1} + b_t, its doubling and chunked forms
    _m("scan.naive_input_gated", SCAN, "h = a[:, t] * h + b[:, t]", "h = a[:, t] * h + (1 - a[:, t]) * b[:, t]"),
    _m("scan.doubling_pad_b_one", SCAN, "prev_b = F.pad(acc_b[:, :-shift], (0, 0, shift, 0), value=0.0)",
       "prev_b = F.pad(acc_b[:, :-shift], (0, 0, shift, 0), value=1.0)"),
    _m("scan.doubling_gate_order", SCAN, "acc_b = acc_a * prev_b + acc_b", "acc_b = prev_a * prev_b + acc_b"),
    _m("scan.doubling_stops_early", SCAN, "while shift < n:", "while shift < n // 2:"),
    _m("scan.chunked_ignores_h0", SCAN, "first = torch.zeros_like(ends[:, :1]) if h0 is None else h0.unsqueeze(1)",
       "first = torch.zeros_like(ends[:, :1])"),
    _m("scan.chunked_pad_gate_zero", SCAN, "a = F.pad(a, (0, 0, 0, pad), value=1.0)",
       "a = F.pad(a, (0, 0, 0, pad), value=0.0)"),
    _m("scan.chunked_state_in_shifted", SCAN, "torch.cat([first, ends[:, :-1]], dim=1)",
       "torch.cat([first, ends[:, 1:]], dim=1)"),
    # LIF: v_t = beta v_{t-1} + x_t - theta s_{t-1} (reset detached), s_t = H(v_t - theta), fast-sigmoid surrogate
    _m("lif.leak_one_minus_beta", LIF, "v = beta * v + x", "v = (1 - beta) * v + x"),
    _m("lif.reset_not_detached", LIF, "- theta * s.detach()", "- theta * s"),
    _m("lif.reset_adds", LIF, "x[..., t, :] - theta * s.detach()", "x[..., t, :] + theta * s.detach()"),
    _m("lif.fires_on_v", LIF, "s = fire(v - theta)", "s = fire(v)"),
    _m("lif.surrogate_not_squared", LIF, "grad / (1.0 + ctx.slope * u.abs()).square()",
       "grad / (1.0 + ctx.slope * u.abs())"),
    _m("lif.rate_drops_slope", LIF, "torch.sigmoid(self.slope * u)", "torch.sigmoid(u)"),
    # procedural memory: read, trace, slot choice, commit
    _m("pm_read.no_scale", PLAST, 'torch.einsum("bnd,brd->bnr", q, K) / math.sqrt(q.shape[-1])',
       'torch.einsum("bnd,brd->bnr", q, K)'),
    _m("pm_read.no_strength", PLAST, "att * s[:, None, :]", "att"),
    _m("pm_read.softmax_over_tokens", PLAST, "math.sqrt(q.shape[-1]), dim=-1)  # (b, n, r)",
       "math.sqrt(q.shape[-1]), dim=1)  # (b, n, r)"),
    _m("eligibility.age_off_by_one", PLAST, "torch.arange(n - 1, -1, -1,", "torch.arange(n, 0, -1,"),
    _m("eligibility.no_input_weight", PLAST, "weights = (1.0 - rho) * rho **", "weights = rho **"),
    _m("slot_weights.weakness_sign", PLAST, "- beta * (1.0 - s))", "+ beta * (1.0 - s))"),
    _m("slot_weights.tau_multiplies", PLAST, "/ tau[:, None]", "* tau[:, None]"),
    _m("slot_weights.top_k_plus_one", PLAST, "score.topk(top_k, dim=-1)", "score.topk(top_k + 1, dim=-1)"),
    _m("unit.no_sqrt", PLAST, "x * torch.rsqrt(sumsq.clamp_min(eps * eps))", "x / sumsq.clamp_min(eps * eps)"),
    _m("pm_commit.key_not_normalised", PLAST, "K = unit(K + gw * (k_e[:, None, :] - K))",
       "K = K + gw * (k_e[:, None, :] - K)"),
    _m("pm_commit.value_delta_sign", PLAST, "V = V + gw * (v_e[:, None, :] - V)", "V = V + gw * (V - v_e[:, None, :])"),
    _m("pm_commit.no_decay", PLAST, "s = (lam[:, None] * s + g", "s = (s + g"),
    _m("pm_commit.no_eta", PLAST, "g[:, None] * eta[:, None] * w)", "g[:, None] * w)"),
    # episodic memory: read, write targets, write
    _m("em_read.score_ignores_strength", PLAST, "score = s[:, None, :] * cos", "score = cos"),
    _m("em_read.no_strength_prior", PLAST, "else scale * cos) + s.clamp_min(1e-30).log()[:, None, :]",
       "else scale * cos)"),
    _m("em_read.no_scale", PLAST, "(qk / math.sqrt(q.shape[-1]) if scale", "(qk if scale"),
    _m("em_read.no_null_item", PLAST, "torch.cat([logits.new_zeros(*logits.shape[:-1], 1),",
       'torch.cat([logits.new_full((*logits.shape[:-1], 1), float("-inf")),'),
    _m("merge.threshold_flipped", PLAST, "merged = best_sim > merge_threshold", "merged = best_sim < merge_threshold"),
    _m("merge.strongest_overwritten", PLAST, "s.argsort(dim=-1, stable=True)",
       "s.argsort(dim=-1, descending=True, stable=True)"),
    _m("merge.into_dead_items", PLAST, ".masked_fill((s <= 0)[:, None, :], -2.0)", ""),
    _m("em_write.no_replaced", PLAST, "s = ((1.0 - replaced) * lam[:, None] * s", "s = (lam[:, None] * s"),
    _m("em_write.overwrite_by_gate", PLAST, "rate = torch.where(merged, g, (g > 0).to(g.dtype))", "rate = g"),
    _m("em_write.value_not_blended", PLAST, 'torch.einsum("bcm,bcd->bmd", rw, v) - rw.sum(1)[..., None] * V',
       'torch.einsum("bcm,bcd->bmd", rw, v)'),
    _m("em_write.no_eta", PLAST, "eta[:, None] * (g[..., None] * w).sum(1)", "(g[..., None] * w).sum(1)"),
    _m("em_write.closed_gate_replaces", PLAST, "overwrites = (~merged & (g > 0))", "overwrites = (~merged)"),
    # the slot-memory loop and the two rules
    _m("slot_memory.segments_off_by_one", SLOTS, "start + self.period - (tokens", "start + self.period - 1 - (tokens"),
    _m("slot_memory.segment_onehot_start", SLOTS, "((t >= starts) & (t < stops))", "((t > starts) & (t < stops))"),
    _m("slot_memory.span_sum_not_mean", SLOTS, "SpanSummary(pooled / tokens,", "SpanSummary(pooled,"),
    _m("slot_memory.surprise_not_relative", SLOTS, ".pow(2).sum(-1) / target.pow(2).sum(-1).clamp_min(1e-12)",
       ".pow(2).sum(-1)"),
    _m("slot_memory.surprise_against_queries", SLOTS, "relative_error(v, read)", "relative_error(q, read)"),
    _m("episodic.read_top_k_minus_one", EM, "em_read(q, K, V, s, self.top_k,", "em_read(q, K, V, s, self.top_k - 1,"),
    _m("episodic.gate_without_salience", EM, "mod.g[:, None] * cand.a, mod.eta", "mod.g[:, None], mod.eta"),
    _m("episodic.least_salient_kept", EM, "argsort(dim=1, descending=True, stable=True))[:, :c]",
       "argsort(dim=1, stable=True))[:, :c]"),
    _m("episodic.offset_past_first_segment", EM, "< bounds[0][1], offset, 0)", "<= bounds[0][1], offset, 0)"),
    _m("procedural.trace_carry_off_by_one", PM, "carry = rho ** bounds[0][1] *", "carry = rho ** (bounds[0][1] - 1) *"),
    _m("procedural.trace_age_off_by_one", PM, "age = onehot @ stops - 1 - torch.arange",
       "age = onehot @ stops - torch.arange"),
    _m("procedural.slots_chosen_by_value", PM, "slot_weights(K, s, cand.e_k,", "slot_weights(K, s, cand.e_v,"),
    _m("procedural.key_and_value_swapped", PM, "pm_commit(K, V, s, cand.e_k, cand.e_v,",
       "pm_commit(K, V, s, cand.e_v, cand.e_k,"),
    # TRM: the recursion, halting and the carry
    _m("recursion.latent_without_input", REC, "        z = f(x + y + z)\n    y = f(y + z)",
       "        z = f(y + z)\n    y = f(y + z)"),
    _m("recursion.answer_sees_input", REC, "    y = f(y + z)\n", "    y = f(x + y + z)\n"),
    _m("recursion.no_cycle_differentiated", REC, "for _ in range(T - 1):", "for _ in range(T):"),
    _m("recursion.one_update_too_few", REC, "graded = 1 if one_step_gradient else n",
       "graded = 1 if one_step_gradient else n - 1"),
    _m("trm.halt_target_inverted", TRM, "halt_logit.float(), correct.float())",
       "halt_logit.float(), (~correct).float())"),
    _m("trm.halt_loss_dropped", TRM, "loss = ce + self.hparams.halt_weight * halt_loss", "loss = ce"),
    _m("trm.halts_when_unsure", TRM, "(halt_logit > 0) & (steps", "(halt_logit < 0) & (steps"),
    _m("trm.threshold_not_a_logit", TRM, "halt_logits > math.log(halt_prob / (1.0 - halt_prob))",
       "halt_logits > halt_prob"),
    _m("trm.refill_keeps_step_count", TRM, "torch.where(fresh, 0, old.steps)", "old.steps"),
    _m("trm.carry_not_detached", TRM, "y.detach(), z.detach(), steps, halted)", "y, z, steps, halted)"),
    # JEPA, filterbank, rotary positions, attention masks
    _m("jepa.block_never_at_the_end", JEPA, "torch.randint(0, s - block_len + 1,", "torch.randint(0, s - block_len,"),
    _m("jepa.block_one_short", JEPA, "masked[start : start + block_len]", "masked[start : start + block_len - 1]"),
    _m("jepa.target_not_detached", JEPA, "F.layer_norm(target.detach(),", "F.layer_norm(target,"),
    _m("jepa.target_not_normed", JEPA, "target = F.layer_norm(target.detach(), target.shape[-1:])",
       "target = target.detach()"),
    _m("jepa.spread_across_width", JEPA, "z.std(dim=0).mean()", "z.std(dim=1).mean()"),
    _m("filterbank.mel_to_hz_offset", MEL, "700.0 * (10.0 ** (mel / 2595.0) - 1.0)", "700.0 * 10.0 ** (mel / 2595.0)"),
    _m("filterbank.falling_slope", MEL, "(hi - bins[None]) / (hi - mid)", "(hi - bins[None]) / (hi - lo)"),
    _m("filterbank.power_real_only", MEL, "spec.real.square() + spec.imag.square()", "spec.real.square()"),
    _m("filterbank.no_floor", MEL, "torch.log(mel + self.eps)", "torch.log(mel)"),
    _m("rope.half_the_frequencies", ROPE, "torch.arange(0, dim, 2, device", "torch.arange(dim // 2, device"),
    _m("rope.rotates_backwards", ROPE, "x1 * cos - x2 * sin, x1 * sin + x2 * cos",
       "x1 * cos + x2 * sin, -x1 * sin + x2 * cos"),
    _m("attention.window_one_wider", ATT + "reference.py", "(q - key_pos < window)", "(q - key_pos <= window)"),
    _m("attention.blocked_sees_the_oldest_key", ATT + "blocked.py", "mask = (i < j) &", "mask = (i <= j) &"),
    _m("attention.cache_keeps_a_window", ATT + "window.py", "keep = self.window - 1", "keep = self.window"),
    _m("attention.query_angles_from_zero", ATT + "window.py", "apply_rope(q, cos[c:], sin[c:])",
       "apply_rope(q, cos[:n], sin[:n])"),
]

# Run in the child process: serve the mutated text for one module, then run pytest.
CHILD = r"""
import importlib.machinery, os, sys
module, path, mutant, marker = sys.argv[1:5]

class MutantLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):  # compiled from the mutated text under the real name; no bytecode read or written
        open(marker, "w").close()
        with open(mutant) as f:
            return compile(f.read(), self.path, "exec", dont_inherit=True)

class MutantFinder:
    @staticmethod
    def find_spec(fullname, search_path=None, target=None):
        if fullname != module:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, search_path)
        if spec is None or not os.path.samefile(spec.origin, path):
            raise ImportError(f"mutation: {fullname} resolves to {spec and spec.origin}, not {path}")
        spec.loader = MutantLoader(fullname, spec.origin)
        return spec

sys.meta_path.insert(0, MutantFinder)
import pytest
sys.exit(pytest.main(sys.argv[5:]))
"""


def module_name(file: str) -> str:
    """ember/ops/scan.py -> ember.ops.scan; plugins/memory/episodic.py -> ember.plugins.memory.episodic."""
    for folder, package in PACKAGE_DIRS.items():
        if file.startswith(folder):
            return package + file.removeprefix(folder).removesuffix(".py").replace("/", ".")
    raise ValueError(f"{file} is not in a package folder {sorted(PACKAGE_DIRS)}")


def mutated_source(mutation: Mutation) -> str:
    """The file's text with the mutation applied; ValueError unless its snippet occurs exactly once."""
    source = (ROOT / mutation.file).read_text()
    count = source.count(mutation.old)
    if count != 1:
        raise ValueError(f"mutation {mutation.name}: its snippet occurs {count} times in {mutation.file}, not once "
                         f"(update MUTATIONS in benchmarks/mutation.py): {mutation.old!r}")
    return source.replace(mutation.old, mutation.new)


def pytest_args(files: tuple[str, ...], slow: bool) -> list[str]:
    return ["-x", "-q", "-p", "no:cacheprovider", *([] if slow else ["-m", "not slow"]), *files]


@dataclass
class Result:
    name: str
    file: str
    status: str  # killed, survived (tests passed), timeout (counted as killed) or unreached (survived: never imported)
    seconds: float
    killed_by: str  # the first failing test, or what stopped the run


def first_failure(output: str) -> str:
    """The first FAILED/ERROR line of pytest's short summary, without the verdict word."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1][:160]
    return output.strip().splitlines()[-1][:160] if output.strip() else ""


def run_mutant(mutation: Mutation, slow: bool, timeout: float) -> Result:
    """Run the mapped tests against one mutant in a fresh Python process."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ember-mutant-") as tmp:
        mutant, marker = Path(tmp) / "mutant.py", Path(tmp) / "imported"
        mutant.write_text(mutated_source(mutation))
        command = [sys.executable, "-c", CHILD, module_name(mutation.file), str(ROOT / mutation.file), str(mutant),
                   str(marker), *pytest_args(TESTS[mutation.file], slow)]
        try:
            done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return Result(mutation.name, mutation.file, "timeout", time.perf_counter() - start, f"over {timeout:g} s")
        seconds, output = time.perf_counter() - start, done.stdout + done.stderr
        if done.returncode in (0, 5) and not marker.exists():
            return Result(mutation.name, mutation.file, "unreached", seconds, "no test imported the module")
        if done.returncode == 0:
            return Result(mutation.name, mutation.file, "survived", seconds, "")
        if done.returncode in (1, 2):  # tests failed, or collection failed on the mutant (an import-time error)
            return Result(mutation.name, mutation.file, "killed", seconds, first_failure(output))
        raise RuntimeError(f"pytest exited {done.returncode} on mutant {mutation.name}:\n{output[-3000:]}")


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONDONTWRITEBYTECODE": "1"}


def baseline_passes(files: tuple[str, ...], slow: bool) -> bool:
    """The unmutated tests: a mutant can only be judged against tests that pass on the real code."""
    done = subprocess.run([sys.executable, "-m", "pytest", *pytest_args(files, slow)], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True)
    if done.returncode:
        print((done.stdout + done.stderr)[-3000:], file=sys.stderr)
    return done.returncode == 0


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip()


def table(results: list[Result]) -> str:
    rows = ["| mutation | file | result | seconds | first failing test |", "|---|---|---|---|---|"]
    rows += [f"| {r.name} | {r.file} | {r.status} | {r.seconds:.1f} | {r.killed_by} |" for r in results]
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated mutation names to run (default: all; see --list)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--slow", action="store_true", help="run the tests marked slow too (default: -m 'not slow')")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one mutant's tests may take; past it the mutant counts as killed (default 300)")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1; each is one process)")
    parser.add_argument("--min-kill-rate", type=float, default=0.9,
                        help="exit 1 when the share of mutants killed is below this (default 0.9)")
    parser.add_argument("--out", default=None, help="write the results to this JSON file (default: write nothing)")
    return parser.parse_args(argv)


def select(only: str) -> list[Mutation]:
    names = [name for name in only.split(",") if name]
    unknown = sorted(set(names) - {m.name for m in MUTATIONS})
    if unknown:
        raise SystemExit(f"unknown mutation(s) {unknown}: see --list")
    return [m for m in MUTATIONS if not names or m.name in names]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = select(args.only)
    try:
        for mutation in chosen:
            mutated_source(mutation)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            print(f"{m.name}  {m.file}  {m.old!r} -> {m.new!r}  [{' '.join(TESTS[m.file])}]")
        return 0
    files = tuple(sorted({f for m in chosen for f in TESTS[m.file]}))
    commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--", *files,
                                                                *{m.file for m in chosen})
    print(f"commit {commit}" + (f", with uncommitted changes:\n{dirty}" if dirty else ", clean"), flush=True)
    start = time.perf_counter()
    if not baseline_passes(files, args.slow):
        print("the unmutated tests fail: fix them first", file=sys.stderr)
        return 2
    print(f"unmutated tests pass ({time.perf_counter() - start:.0f} s); {len(chosen)} mutants", flush=True)
    results = run_all(chosen, args)
    wall = time.perf_counter() - start
    killed = sum(r.status in ("killed", "timeout") for r in results)
    rate = killed / len(results)
    print("\n" + table(results) + "\n")
    print(f"kill rate {killed}/{len(results)} = {rate:.1%} in {wall / 60:.1f} min (commit {commit}"
          f"{', uncommitted changes' if dirty else ''})")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "commit": commit, "uncommitted": dirty.splitlines(), "slow": args.slow,
            "command": " ".join(["python benchmarks/mutation.py", *(sys.argv[1:] if argv is None else argv)]),
            "killed": killed, "total": len(results), "kill_rate": rate, "wall_s": wall,
            "mutants": [asdict(r) for r in results]}, indent=1) + "\n")
    return 0 if rate >= args.min_kill_rate else 1


def run_all(chosen: list[Mutation], args: argparse.Namespace) -> list[Result]:
    """Every mutant, `args.jobs` at a time, with a progress line as each finishes; results in list order."""
    finished = itertools.count(1)

    def one(mutation: Mutation) -> Result:
        result = run_mutant(mutation, args.slow, args.timeout)
        print(f"[{next(finished):2d}/{len(chosen)}] {result.status:9s} {result.seconds:5.1f}s  {result.name}"
              f"{'  (' + result.killed_by + ')' if result.killed_by else ''}", flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        return list(pool.map(one, chosen))


if __name__ == "__main__":
    sys.exit(main())
