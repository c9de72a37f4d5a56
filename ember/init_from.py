"""Start a run from another run's weights (`init_from`): a phase chain, or a change of recipe mid-training.

A resume (`--ckpt_path`) restores the checkpoint's hyper-parameters, optimizer and step; `init_from` copies
only weights into a model built from this run's config, so everything else is new.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from ember.errors import CheckpointMismatchError, EmberConfigError
from ember.files import load_checkpoint

log = logging.getLogger(__name__)


def copy_matching_weights(module: nn.Module, path: str, option: str) -> dict[str, list[str]]:
    """Copy every weight of checkpoint `path`'s state_dict (the EMA average, for runs under weight EMA) whose name
    is in `module`; the rest of module keeps its init. `option` names the setting in messages. Returns the names
    {"copied", "new" (module only), "dropped" (checkpoint only)}; a missing file or a weight whose shape changed
    is refused before anything is copied."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise EmberConfigError(f"{option}={path} does not exist: run the earlier phase first (its config names the "
                               f"checkpoint folder), or set {option} to its checkpoint")
    saved = load_checkpoint(file)["state_dict"]
    mine = module.state_dict()
    bad = [k for k in saved if k in mine and saved[k].shape != mine[k].shape]
    if bad:
        raise CheckpointMismatchError(f"{option}={path}: {len(bad)} weight(s) changed shape, e.g. {bad[0]}: "
                                      f"{tuple(saved[bad[0]].shape)} vs {tuple(mine[bad[0]].shape)}. The runs "
                                      "may add modules but must keep the shared ones' sizes")
    copied = {k: v for k, v in saved.items() if k in mine}
    module.load_state_dict(copied, strict=False)
    report = {"copied": sorted(copied), "new": sorted(set(mine) - set(saved)),
              "dropped": sorted(set(saved) - set(mine))}
    log.info("%s %s: %d weights copied, %d new (kept at init), %d in the checkpoint not used",
             option, path, len(report["copied"]), len(report["new"]), len(report["dropped"]))
    return report
