"""`ember data prepare text|audio-prosody`: write data sets as webdataset shards (nothing is downloaded), into a
folder or through a `pipe:COMMAND` per file (data_modules/shard_manifest.py's shard_output)."""

from __future__ import annotations

import logging
from pathlib import Path

from jsonargparse import ArgumentParser
from jsonargparse.typing import PositiveFloat, PositiveInt

from ember.cli.flags import modernize
from ember.data_modules.audio_shards import prepare_prosody_shards
from ember.data_modules.shards import prepare_text_shards

log = logging.getLogger("ember")
OUT_HELP = ("output folder (must be new or empty), or pipe:COMMAND with {name}, run once per file with the file on "
            "its stdin, the manifest last (e.g. 'pipe:aws s3 cp - s3://bucket/shards/{name}')")


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="ember data", description="Prepare data sets (nothing is downloaded).")
    sub = parser.add_subcommands(required=True, dest="command")
    prepare = ArgumentParser(description="Prepare a data set.")
    text = ArgumentParser(description="Write text files as webdataset shards for TextBytes (data.path: OUT).")
    text.add_argument("--input", type=str, required=True, nargs="+", help="text files or folders")
    text.add_argument("--out", type=str, required=True, help=OUT_HELP)
    text.add_argument("--chunk_bytes", type=PositiveInt, default=1 << 16, help="bytes per sample")
    text.add_argument("--shard_bytes", type=PositiveInt, default=1 << 28, help="maximum bytes per shard file")
    text.add_argument("--val_fraction", type=float, default=0.1, help="trailing share of the text kept for validation")
    text.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    sub.add_subcommand("prepare", prepare)
    kinds = prepare.add_subcommands(required=True, dest="kind")
    kinds.add_subcommand("text", text)
    kinds.add_subcommand("audio-prosody", _audio_prosody_parser())
    args = parser.parse_args(modernize(argv))
    if args.prepare.kind == "audio-prosody":
        return _prepare_audio_prosody(args.prepare["audio-prosody"])
    opts = args.prepare.text
    inputs = list(opts.input)
    manifest = prepare_text_shards([Path(p) for p in inputs], opts.out, opts.chunk_bytes, opts.shard_bytes,
                                   opts.val_fraction, opts.overwrite)
    log.info("prepared %s: train %d bytes in %d shard(s), val %d bytes. Train with --data.init_args.path %s",
             opts.out, manifest["train"]["bytes"], len(manifest["train"]["shards"]), manifest["val"]["bytes"],
             _train_path(opts.out))
    return 0


def _train_path(out: str) -> str:
    """What data.path takes to read what was written to --out."""
    return "<the folder or folder URL the command wrote to>" if out.startswith("pipe:") else out


def _audio_prosody_parser() -> ArgumentParser:
    audio = ArgumentParser(description="Synthesize prosody utterances (same words, class in the sound) as "
                           "webdataset shards for ProsodyData (data.path: OUT).")
    audio.add_argument("--out", type=str, required=True, help=OUT_HELP)
    audio.add_argument("--size", type=PositiveInt, default=2000, help="utterances in all (train + val)")
    audio.add_argument("--seed", type=int, default=0, help="seed: the same seed writes the same audio")
    audio.add_argument("--task", type=str, default="all", help="question, arousal, confidence or all")
    audio.add_argument("--source", type=str, default="synth", help="synth (built in) or espeak (needs espeak-ng)")
    audio.add_argument("--seconds", type=PositiveFloat, default=1.5, help="length of every utterance")
    audio.add_argument("--val_fraction", type=float, default=0.1, help="share of the utterances kept for validation")
    audio.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    return audio


def _prepare_audio_prosody(opts) -> int:
    manifest = prepare_prosody_shards(opts.out, opts.size, opts.seed, opts.task, opts.seconds,
                                      val_fraction=opts.val_fraction, overwrite=opts.overwrite, source=opts.source)
    log.info("prepared %s: %d train and %d val utterances. Train with --data.init_args.path %s", opts.out,
             manifest["train"]["samples"], manifest["val"]["samples"], _train_path(opts.out))
    return 0
