"""Memory-state files: a stream's fast state saved between program runs (SPEC 3.3).

A file is safetensors (one tensor per state leaf, named as `StateBase.tensors()` names them)
with a header: format version, Ember version, and a hash of the model's composite signature
(plugin per slot and every parameter shape), so a state from another model is refused.
Files are written to a temporary name and renamed: a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

import ember
from ember.errors import EmberConfigError, EmberDataError
from ember.files import atomic_path
from ember.state import StateBase

# 2: slot-memory states carry `recent`, the past of their short convolution; 3: and `modulation`, the stream's
# external signals
FORMAT = "3"


def model_hash(model) -> str:
    """Short hash of model.composite_signature(): equal for models that can share a memory state."""
    text = json.dumps(model.composite_signature(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_memory_state(state: StateBase, path: Path, model) -> None:
    """Write state atomically to path with its header."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in state.tensors().items()}
    header = {"format": FORMAT, "ember_version": ember.__version__, "model_hash": model_hash(model)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)


def load_memory_state(path: Path, model, template: StateBase) -> StateBase:
    """Read a state file written for this model; `template` gives the structure (any state of the model)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors: dict[str, Tensor] = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise EmberDataError(f"{path} is not a readable Ember memory-state file ({err}): pass another "
                             "--memory_state path, or move this one away to start with an empty memory") from err
    if header.get("format") != FORMAT:
        raise EmberDataError(f"{path} has memory-state format {header.get('format')!r}; this Ember "
                             f"({ember.__version__}) reads format {FORMAT}: start a new memory-state file")
    if header.get("model_hash") != model_hash(model):
        raise EmberConfigError(f"{path} was written by another model (hash {header.get('model_hash')}, this "
                               f"model {model_hash(model)}): use the --config and --ckpt_path it was made with, "
                               "or another --memory_state path for this model")
    try:
        return template.fill(tensors)
    except (KeyError, ValueError) as err:
        raise EmberDataError(f"{path} does not match this model's state layout ({err}): start a new "
                             "memory-state file") from err
