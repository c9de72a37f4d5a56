"""One flag style for every `ember` command: words joined by underscores, as LightningCLI's own options
(`--ckpt_path`, `--trainer.max_steps`). The dashed spellings of earlier versions still work, with one line saying
the new one; so does `--overwrite true|false` (now a plain switch)."""

from __future__ import annotations

import logging

log = logging.getLogger("ember")
RENAMED = {"--memory-state": "--memory_state", "--session-bytes": "--session_bytes",
           "--heldout-bytes": "--heldout_bytes", "--memories-off": "--memories_off"}
SWITCHES = ("--overwrite",)  # took a value before (`--overwrite true`); now given alone


def modernize(argv: list[str]) -> list[str]:
    """argv with the old spellings rewritten (one deprecation line for each), for the command's parser."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in RENAMED:
            log.warning("%s is now spelled %s (the old spelling still works, for now)", name, RENAMED[name])
            arg = RENAMED[name] + eq + value
        if name in SWITCHES:
            given = value if eq else (argv[i + 1] if i + 1 < len(argv) and argv[i + 1].lower() in
                                      ("true", "false") else None)
            if given is not None:
                log.warning("%s takes no value now: give %s alone to switch it on, or leave it out", name, name)
                i += 1 if eq else 2
                if given.lower() == "true":
                    out.append(name)
                continue
        out.append(arg)
        i += 1
    return out
