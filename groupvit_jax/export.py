"""Writes the evaluation-only export of a training run's latest checkpoint.

    python -m groupvit_jax.export --workdir W --out DIR [--step N] [--overwrite]

The export (Orbax params + batch_stats, model config JSON) is what
`gv.load_pretrained` reads; optimizer state and rng are left behind.
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from groupvit_jax import pretrained
from groupvit_jax.config import GroupViTConfig


def read_training_checkpoint(workdir, step: int | None = None) -> pretrained.PretrainedGroupViT:
    """The model of a workdir's checkpoint (latest by default), as numpy on this host."""
    workdir = Path(workdir)
    config_file = workdir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: missing; is {workdir} a training workdir?")
    model = GroupViTConfig.from_dict(json.loads(config_file.read_text())["model"])
    mgr = ocp.CheckpointManager(workdir.absolute() / "checkpoints")
    steps = mgr.all_steps()
    if not steps:
        raise FileNotFoundError(f"{workdir / 'checkpoints'}: no checkpoint to export.")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint at step {step} in {workdir}; there are {sorted(steps)}.")
    path = workdir.absolute() / "checkpoints" / str(step) / "default"
    ckptr = ocp.PyTreeCheckpointer()
    meta = ckptr.metadata(path).item_metadata.tree
    # Only the variables, restored as numpy whatever device topology trained them.
    wanted = {k: meta[k] for k in ("params", "batch_stats")}
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    variables = ckptr.restore(path, args=ocp.args.PyTreeRestore(
        item=wanted, restore_args=as_numpy, partial_restore=True))
    return pretrained.PretrainedGroupViT(model, variables)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--step", type=int, default=None, help="default: the latest")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        model = read_training_checkpoint(args.workdir, args.step)
        out = pretrained.export(model, args.out, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.workdir} -> {out}")
    return 0


class _CallableModule(types.ModuleType):
    """`import groupvit_jax.export` rebinds the package attribute `export` from the
    function `gv.export(model, out_dir)` to this module; calling it must still export."""

    def __call__(self, model, out_dir, overwrite: bool = False):
        return pretrained.export(model, out_dir, overwrite)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
