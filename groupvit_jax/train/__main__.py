"""Trains GroupViT: `python -m groupvit_jax.train --config=configs/FILE.py[:ARG] --workdir=DIR`.

Every host runs the same command. Rerunning with the same workdir resumes from the
latest checkpoint; SIGTERM (preemption) saves one before exiting.
"""

import jax
from absl import flags

from groupvit_jax.train import recipe
from groupvit_jax.train.trainer import quiet_orbax_logs, train_and_evaluate
from input_pipeline import cli


def define_flags(fv: flags.FlagValues) -> None:
    cli.define_config_file(fv)
    flags.DEFINE_string("workdir", None, "Checkpoints, metrics and the resolved config go here.",
                        flag_values=fv, required=True)
    cli.define_jax_distributed(fv)


def _run(args: flags.FlagValues) -> int:
    config = cli.config_value(args)
    recipe.check(config)  # before the trainer divides by them
    quiet_orbax_logs()
    if args.jax_distributed:
        jax.distributed.initialize()
    train_and_evaluate(config, args.workdir)
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
