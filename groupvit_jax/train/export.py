"""Writes the evaluation-only export of a training run's latest checkpoint.

    python -m groupvit_jax.train.export --workdir=W --out=DIR [--step=N] [--overwrite]

The export (Orbax params + batch_stats, model config JSON) is what
`gv.load_pretrained` reads; optimizer state and rng are left behind.
"""
from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from groupvit_jax.checkpoints import integrity, pretrained
from groupvit_jax.models.config import GroupViTConfig
from input_pipeline import cli, paths


def read_training_checkpoint(workdir, step: int | None = None) -> pretrained.PretrainedGroupViT:
    """The model of a workdir's checkpoint (latest by default; local or gs://), as numpy
    on this host."""
    workdir = paths.as_path(workdir)
    config_file = workdir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file}: missing; is {workdir} a training workdir?")
    document = cli.read_json(config_file)
    model = integrity.parse_config(config_file, lambda: GroupViTConfig.from_dict(document["model"]))
    mgr = ocp.CheckpointManager(paths.absolute(workdir) / "checkpoints")
    steps = mgr.all_steps()
    if not steps:
        raise FileNotFoundError(f"{workdir / 'checkpoints'}: no checkpoint to export.")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint at step {step} in {workdir}; there are {sorted(steps)}.")
    path = paths.absolute(workdir) / "checkpoints" / str(step) / "default"
    ckptr = ocp.PyTreeCheckpointer()
    meta = ckptr.metadata(path).item_metadata.tree
    # Only the variables, restored as numpy whatever device topology trained them.
    wanted = {k: meta[k] for k in ("params", "batch_stats")}
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    variables = ckptr.restore(path, args=ocp.args.PyTreeRestore(
        item=wanted, restore_args=as_numpy, partial_restore=True))
    pretrained.check_shapes(variables, model, f"{path} (model of {config_file})")
    return pretrained.PretrainedGroupViT(model, variables)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("workdir", None, "the training run's workdir (local or gs://)",
                        flag_values=fv, required=True)
    flags.DEFINE_string("out", None, "the export folder to write (local or gs://)",
                        flag_values=fv, required=True)
    flags.DEFINE_integer("step", None, "the checkpoint's step; default: the latest",
                         lower_bound=0, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace a non-empty --out", flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    workdir, out = cli.path_flag(args, "workdir"), cli.path_flag(args, "out")
    pretrained.check_export_destination(out, args.overwrite)
    model = read_training_checkpoint(workdir, args.step)
    out = pretrained.export(model, out, overwrite=args.overwrite)
    print(f"exported {args.workdir} -> {out}")
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
