"""Audio prosody as webdataset shards: `ember data prepare audio-prosody` writes them, ProsodyData reads them.

Layout of a shard folder (as data_modules/shards.py, with "kind": "audio-prosody"):
    ember-shards.json          manifest: format, kind, sample_rate, tasks and classes, shards per split
    train-000000.tar ...       samples {"__key__", "wav": 16-bit PCM WAV, "cls": class index, "task": name}
    val-000000.tar ...

The folder may be local or a folder URL, or the shards webdataset URLs (brace pattern, pipe:), as for text
(data_modules/shards.py, remote.py); `--out` may be a `pipe:COMMAND` with {name}.

Every stored waveform is checked when read (data_modules/audio.py, check_audio): NaN, silent or non-WAV
samples are refused naming the shard and key; another sample rate is resampled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import webdataset as wds

from ember.data_modules.audio import check_audio, decode_wav, encode_wav
from ember.data_modules.espeak import Source, example_maker
from ember.data_modules.prosody_tasks import TASKS, ProsodyExample, TaskOrAll, check_length
from ember.data_modules.remote import shard_samples
from ember.data_modules.shard_manifest import FORMAT, MANIFEST, ShardOut, check_output, shard_output, shard_splits
from ember.errors import EmberDataError

log = logging.getLogger(__name__)
KIND = "audio-prosody"
REWRITE = "rewrite the shards with `ember data prepare audio-prosody --out DIR`"


def prepare_prosody_shards(out: Path | str, size: int = 2000, seed: int = 0, task: TaskOrAll = "all",
                           seconds: float = 1.5, sample_rate: int = 16000, val_fraction: float = 0.1,
                           shard_samples: int = 1000, overwrite: bool = False, source: Source = "synth") -> dict:
    """Synthesize `size` utterances into train/val shards in `out` (a folder, built in a temporary folder, then
    renamed; or a `pipe:COMMAND` with {name}, run once per file, as data_modules/shards.py's prepare_text_shards).

    Utterance i of split s is make(rng(seed, s, i)), the same as ProsodyData generates; source "synth" is the
    built-in synthesizer, "espeak" the espeak-ng binary. Returns the manifest.
    """
    make = example_maker(source)
    check_output(out, overwrite)
    if task != "all" and task not in TASKS:
        raise EmberDataError(f"task={task!r} is unknown: use 'all' or one of {sorted(TASKS)}")
    if size < 2 or not 0 < val_fraction < 1 or seed < 0:
        raise EmberDataError(f"size={size} must be >= 2, val_fraction={val_fraction} in (0, 1) and seed={seed} >= 0")
    check_length(seconds, sample_rate)
    n_val = max(1, int(size * val_fraction))
    with shard_output(out) as sink:
        manifest = {"format": FORMAT, "kind": KIND, "sample_rate": sample_rate, "seconds": seconds, "seed": seed,
                    "source": source, "task": task, "classes": {name: list(t.classes) for name, t in TASKS.items()},
                    "texts": {name: t.text for name, t in TASKS.items()}}
        for split, index, count in (("train", 0, size - n_val), ("val", 1, n_val)):
            examples = (make(np.random.default_rng([seed, index, i]), task, seconds, sample_rate)
                        for i in range(count))
            manifest[split] = _write_split(sink, split, examples, sample_rate, shard_samples)
        sink.write(MANIFEST, json.dumps(manifest, indent=2).encode())
    log.info("wrote %d train and %d val utterances to %s", size - n_val, n_val, out)
    return manifest


def _write_split(sink: ShardOut, split: str, examples, sample_rate: int, shard_samples: int) -> dict:
    written = []  # ShardWriter calls post with each shard it finishes
    with wds.ShardWriter(sink.pattern(split), maxcount=shard_samples, verbose=0, post=written.append) as shards:
        samples = 0
        for i, example in enumerate(examples):
            shards.write({"__key__": f"{i:09d}", "wav": encode_wav(example.signal, sample_rate),
                          "cls": str(example.label).encode(), "task": example.task.encode()})
            samples += 1
    return {"shards": [f"{split}-{i:06d}.tar" for i in range(len(written))], "samples": samples}


def read_audio_split(path: Path | str, split: str, sample_rate: int = 16000,
                     val_path: Optional[str] = None) -> list[ProsodyExample]:
    """Every utterance of a split, checked and brought to sample_rate.

    Args:
        path: a shard folder, a folder URL serving one, or a webdataset URL (brace pattern or pipe:) of the
            train shards (data_modules/remote.py).
        split: "train" or "val".
        sample_rate: the rate the utterances are brought to.
        val_path: the val shards' webdataset URL when path is one (it has no manifest naming them).
    """
    urls = shard_splits(path, val_path, KIND)[split]
    examples = [_example(sample, sample_rate, REWRITE) for sample in shard_samples(urls, REWRITE)]
    if not examples:
        raise EmberDataError(f"the {split} split of {path} holds no utterances: write more with --size")
    return examples


def _example(sample: dict, sample_rate: int, rewrite: str) -> ProsodyExample:
    """One stored utterance, checked: its WAV decoded and brought to sample_rate, its class and task read."""
    name = f"{sample['__url__']}:{sample['__key__']}"
    missing = [key for key in ("wav", "cls", "task") if key not in sample]
    if missing:
        raise EmberDataError(f"{name} has no {missing} member: {rewrite}")
    signal, rate = decode_wav(sample["wav"], name)
    signal = check_audio(signal, rate, sample_rate, name)
    try:
        label, task = int(sample["cls"]), sample["task"].decode()
    except ValueError as err:  # not a number, not UTF-8
        raise EmberDataError(f"{name} has an unreadable class or task ({err}): {rewrite}") from err
    if task not in TASKS or not 0 <= label < len(TASKS[task].classes):
        raise EmberDataError(f"{name} is labelled class {label} of task {task!r}, which the prosody tasks "
                             f"({sorted(TASKS)}) do not have: {rewrite}")
    return ProsodyExample(signal, label, task)
