"""Converts a PyTorch GroupViT checkpoint into our export format.

    python -m groupvit_jax.convert SRC DST [--overwrite]

SRC is an NVlabs release file (.pth) or a Hugging Face GroupViT folder
(config.json + model.safetensors / pytorch_model.bin); the kind is detected.
DST is written as a groupvit_jax export, which `gv.load_pretrained` reads.
"""
from __future__ import annotations

import argparse
import sys

import jax

from groupvit_jax import pretrained


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="NVlabs .pth file or Hugging Face model folder")
    parser.add_argument("dst", help="output folder (groupvit_jax export)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    args = parser.parse_args(argv)
    try:
        kind = pretrained.detect_format(pretrained.Path(args.src))
        if kind == "ours":
            raise ValueError(f"{args.src} is already a groupvit_jax export.")
        model = pretrained.load_pretrained(args.src)
        out = pretrained.export(model, args.dst, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = sum(x.size for x in jax.tree.leaves(model.variables["params"]))
    print(f"converted {kind} checkpoint {args.src} ({n / 1e6:.2f}M parameters) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
