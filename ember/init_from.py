"""Start a run from another run's weights (`init_from`): a phase chain, or a change of recipe mid-training.

A resume (`--ckpt_path`) restores the checkpoint's hyper-parameters, optimizer and step; `init_from` copies
only weights into a model built from this run's config, so everything else is new.

Weights match by name; inside a layer stack (a TokenStack's `<...>stack.layers.<i>.`) by role, never by list
index: NMLBackbone puts a block's episodic memory read (EM) before the block's layers, so a phase that adds EMs
shifts every index. Each entry of a stack gets its role from the state_dict keys alone, the checkpoint's and the
model's alike:
- an EM read (a MemoryReadLayer: keys `norm.*` and `memory.*` only) starts a block: `block<k>.em`;
- any other entry is a layer: `block<k>.layer<j>`, the j-th of block k.
A stack without EMs shows no blocks: it takes the blocks of the other stack when that one has EMs, and is
`layer<p>` when neither has; both need the same layer count (the blocks are unknown otherwise). The p-th layer
of one stack must have the role of the other's p-th (EMs aside): layers keep their order and their block, so
a model may add or drop EMs, PMs, blocks at the end or layers of its single block, and nothing else moves.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict

from torch import nn

from ember.checkpoint_source import resolve_checkpoint, trainer_store
from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.files import load_checkpoint

log = logging.getLogger(__name__)

STACK_KEY = re.compile(r"^(.*?stack\.layers)\.(\d+)\.(.+)$")  # (stack, index, rest of the key)


def copy_matching_weights(module: nn.Module, path: str, option: str) -> dict[str, list[str]]:
    """Copy every weight of checkpoint `path`'s state_dict (the EMA average, for runs under weight EMA) that has a
    place in `module`: the same name, or inside a layer stack the same role (see the module docstring); the rest of
    module keeps its init. `path` is a checkpoint file, a run folder (its best.ckpt) or runs:/<run_id>[/<artifact>]
    (ember.checkpoint_source), the last looked up in the store of the module's trainer's logger. `option` names the
    setting in messages. Returns the names {"copied", "new" (module only), "dropped" (checkpoint only)}, copied and
    new as module names them; a missing file, a weight whose shape changed or a layer that would change block is
    refused before anything is copied."""
    trainer = getattr(module, "_trainer", None)  # a LightningModule's, once attached (None outside a Trainer)
    file = resolve_checkpoint(str(path), "init", lambda: trainer_store(trainer), option)
    if not file.is_file():
        raise EmberConfigError(f"{option}={path} does not exist: run the earlier phase first (its config names the "
                               f"checkpoint folder), or set {option} to its checkpoint")
    saved = load_checkpoint(file)["state_dict"]
    mine = module.state_dict()
    mine_roles, saved_roles = role_names(mine, saved, f"{option}={path}")
    pairs = {mine_roles[name]: saved_roles[name] for name in mine_roles.keys() & saved_roles.keys()}  # mine: saved
    bad = sorted((m, s) for m, s in pairs.items() if saved[s].shape != mine[m].shape)
    if bad:
        m, s = bad[0]
        raise CheckpointMismatchError(f"{option}={path}: {len(bad)} weight(s) changed shape, e.g. {m}: "
                                      f"{tuple(saved[s].shape)} vs {tuple(mine[m].shape)}. The runs "
                                      "may add modules but must keep the shared ones' sizes")
    module.load_state_dict({m: saved[s] for m, s in pairs.items()}, strict=False)
    report = {"copied": sorted(pairs), "new": sorted(set(mine) - set(pairs)),
              "dropped": sorted(set(saved) - set(pairs.values()))}
    log_report(f"{option} {path}", report, pairs, mine_roles, saved_roles)
    return report


def role_names(mine: dict, saved: dict, setting: str) -> tuple[dict[str, str], dict[str, str]]:
    """{name by role: key} of the model's keys and of the checkpoint's: a key outside a layer stack is its own
    name, one inside is `<stack>[<role>].<rest>`, e.g. backbone.stack.layers[block0.em].norm.weight. `setting`
    (option=path) opens the message of a refused copy."""
    mine_stacks, saved_stacks = stack_entries(mine), stack_entries(saved)
    mine_roles, saved_roles = {}, {}
    for stack in mine_stacks.keys() | saved_stacks.keys():
        mine_kinds, saved_kinds = entry_kinds(mine_stacks.get(stack, {})), entry_kinds(saved_stacks.get(stack, {}))
        mine_roles[stack], saved_roles[stack] = stack_roles(stack, mine_kinds, saved_kinds, setting)
    return by_role(mine, mine_roles), by_role(saved, saved_roles)


def stack_entries(keys) -> dict[str, dict[int, list[str]]]:
    """{stack: {index: rest of each of its keys}} of the keys inside layer stacks."""
    stacks = defaultdict(lambda: defaultdict(list))
    for key in keys:
        if match := STACK_KEY.match(key):
            stacks[match[1]][int(match[2])].append(match[3])
    return stacks


def entry_kinds(entries: dict[int, list[str]]) -> dict[int, str]:
    """{index: "em" (keys norm.* and memory.* only: a MemoryReadLayer) or "layer"}, in index order."""
    is_em = lambda rests: (any(r.startswith("memory.") for r in rests)  # noqa: E731
                           and all(r.startswith(("norm.", "memory.")) for r in rests))
    return {i: "em" if is_em(entries[i]) else "layer" for i in sorted(entries)}


def block_sizes(kinds: list[str]) -> list[int]:
    """Layers per block, each EM starting a block."""
    sizes = []
    for kind in kinds:
        if kind == "em" or not sizes:
            sizes.append(0)
        sizes[-1] += kind == "layer"
    return sizes


def roles(kinds: list[str], borrowed: list[int] | None) -> list[str]:
    """The role of each entry: blocks from its EMs, else from `borrowed` (the other stack's layers per block, when
    the layer counts agree), else none (layer<p>)."""
    if "em" not in kinds:
        if borrowed is None or sum(borrowed) != len(kinds):
            return [f"layer{p}" for p in range(len(kinds))]
        return [f"block{k}.layer{j}" for k, size in enumerate(borrowed) for j in range(size)]
    names, block, j = [], -1, 0
    for kind in kinds:
        if kind == "em" or block < 0:
            block, j = block + 1, 0
        names.append(f"block{block}.em" if kind == "em" else f"block{block}.layer{j}")
        j += kind == "layer"
    return names


def stack_roles(stack: str, mine: dict[int, str], saved: dict[int, str], setting: str
                ) -> tuple[dict[int, str], dict[int, str]]:
    """({index: role} of the model's entries of one stack, the same of the checkpoint's), from their kinds; refused
    where a layer would change block (see the module docstring)."""
    mine_kinds, saved_kinds = list(mine.values()), list(saved.values())
    mine_em, saved_em = "em" in mine_kinds, "em" in saved_kinds
    mine_roles = roles(mine_kinds, block_sizes(saved_kinds) if saved_em else None)
    saved_roles = roles(saved_kinds, block_sizes(mine_kinds) if mine_em else None)
    mine_layers = [name for name in mine_roles if not name.endswith(".em")]
    saved_layers = [name for name in saved_roles if not name.endswith(".em")]
    blocks_unknown = bool(mine and saved) and not (mine_em and saved_em) and len(mine_layers) != len(saved_layers)
    if blocks_unknown or mine_layers[:len(saved_layers)] != saved_layers[:len(mine_layers)]:
        why = "" if mine_em and saved_em else "; a stack without EMs shows no blocks, so the layer counts must match"
        raise CheckpointMismatchError(
            f"{setting}: the layers of {stack} do not keep their blocks (checkpoint: {describe(saved_kinds)}; this "
            f"model: {describe(mine_kinds)}{why}), so a copy would put a layer into another block's place. Keep the "
            "earlier phase's blocks and layers_per_block (EMs and PMs may come and go), or start this model without "
            "init_from")
    return dict(zip(mine, mine_roles)), dict(zip(saved, saved_roles))


def describe(kinds: list[str]) -> str:
    """A stack's shape in words: '2 block(s) of 1 layer(s) with EMs', or '4 layers without EMs'."""
    if "em" not in kinds:
        return f"{len(kinds)} layers without EMs"
    sizes = block_sizes(kinds)
    return f"{len(sizes)} block(s) of {sizes[0] if len(set(sizes)) == 1 else sizes} layer(s) with EMs"


def by_role(keys, roles_of: dict[str, dict[int, str]]) -> dict[str, str]:
    """{name by role: key} (see role_names); roles_of is {stack: {index: role}}."""
    named = {}
    for key in keys:
        match = STACK_KEY.match(key)
        named[key if match is None else f"{match[1]}[{roles_of[match[1]][int(match[2])]}].{match[3]}"] = key
    return named


def log_report(source: str, report: dict[str, list[str]], pairs: dict[str, str], mine_roles: dict[str, str],
               saved_roles: dict[str, str]):
    """One message: the counts; the stack entries copied to another index; and what was not copied and why, as
    whole modules by role (backbone.stack.layers[block{0,1}.em]), not key by key. A warning when weights of the
    checkpoint go unused."""
    lines = [f"{source}: {len(report['copied'])} weights copied, {len(report['new'])} new (kept at init), "
             f"{len(report['dropped'])} in the checkpoint not used"]
    moved = defaultdict(set)  # stack: {(checkpoint index, model index)}
    for m, s in pairs.items():
        if (mine := STACK_KEY.match(m)) and (theirs := STACK_KEY.match(s)) and mine[2] != theirs[2]:
            moved[mine[1]].add((int(theirs[2]), int(mine[2])))
    for stack, places in sorted(moved.items()):
        lines.append(f"  placed by role: {stack} " + ", ".join(f"{s} -> {m}" for s, m in sorted(places)))
    new = {name for name, key in mine_roles.items() if key not in pairs}
    if new:
        lines.append(f"  new: {compact(whole_modules(new, mine_roles))} (not in the checkpoint: this model adds them)")
    used = set(pairs.values())
    dropped = {name for name, key in saved_roles.items() if key not in used}
    if dropped:
        lines.append(f"  dropped: {compact(whole_modules(dropped, saved_roles))} (not in this model)")
    (log.warning if dropped else log.info)("\n".join(lines))


def whole_modules(missing: set[str], names) -> list[str]:
    """The missing names as the largest modules whose every name is missing: a whole new EM is one entry."""
    parts = {name: tuple(re.split(r"\.(?![^\[]*\])", name)) for name in names}  # dots outside [role]
    total, gone = Counter(), Counter()
    for name, path in parts.items():
        for n in range(1, len(path) + 1):
            total[path[:n]] += 1
            gone[path[:n]] += name in missing
    firsts = {next(path[:n] for n in range(1, len(path) + 1) if gone[path[:n]] == total[path[:n]])
              for path in (parts[name] for name in missing)}
    return sorted(".".join(path) for path in firsts)


def compact(modules: list[str]) -> str:
    """'a[block0.em], a[block1.em]' -> 'a[block{0,1}.em]' (the first number of a role: block, or layer)."""
    blocks = defaultdict(list)
    for module in modules:
        match = re.search(r"\[[a-z]+(\d+)", module)
        pattern = module if match is None else module[:match.start(1)] + "{}" + module[match.end(1):]
        blocks[pattern].append(None if match is None else match[1])
    shown = [p if ks == [None] else p.replace("{}", ks[0] if len(ks) == 1 else "{" + ",".join(ks) + "}")
             for p, ks in blocks.items()]
    return ", ".join(shown)
