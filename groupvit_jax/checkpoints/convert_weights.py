"""Converts a PyTorch GroupViT checkpoint into our export format.

    python -m groupvit_jax.checkpoints.convert_weights --src=SRC --dst=DST [--overwrite]

SRC is an NVlabs release file (.pth) or a Hugging Face GroupViT folder
(config.json + model.safetensors / pytorch_model.bin); the kind is detected.
DST is written as a groupvit_jax export, which `gv.load_pretrained` reads.
"""
from __future__ import annotations

import jax
from absl import flags

from groupvit_jax.checkpoints import pretrained
from input_pipeline import cli, paths


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("src", None, "NVlabs .pth file or Hugging Face model folder",
                        flag_values=fv, required=True)
    flags.DEFINE_string("dst", None, "output folder (groupvit_jax export)", flag_values=fv,
                        required=True)
    flags.DEFINE_bool("overwrite", False, "replace a non-empty --dst", flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    kind = pretrained.detect_format(paths.as_path(args.src))
    if kind == "ours":
        raise ValueError(f"{args.src}: already a groupvit_jax export.")
    pretrained.check_export_destination(args.dst, args.overwrite)
    model = pretrained.load_pretrained(args.src)
    out = pretrained.export(model, args.dst, overwrite=args.overwrite)
    n = sum(x.size for x in jax.tree.leaves(model.variables["params"]))
    print(f"converted {kind} checkpoint {args.src} ({n / 1e6:.2f}M parameters) -> {out}")
    return cli.OK


# ImportError: a .pth or .bin needs torch to be read.
main = cli.binary(define_flags, _run, data_errors=(ImportError,))


if __name__ == "__main__":
    cli.run_main(main)
