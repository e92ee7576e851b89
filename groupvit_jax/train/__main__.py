"""Trains GroupViT: `python -m groupvit_jax.train --config=configs/FILE.py[:ARG] --workdir=DIR`.

Every host runs the same command (groupvit_jax/multihost.py: when it joins the others
by itself, else pass --jax_distributed); a host given another config or other data files
stops them all at start, naming what differs. Rerunning with the same workdir resumes
from the latest checkpoint; SIGTERM (preemption) saves one before exiting.
"""

import dataclasses

from absl import flags

from groupvit_jax import multihost
from groupvit_jax.train import recipe
from groupvit_jax.train.trainer import NonFiniteLossError, quiet_orbax_logs, train_and_evaluate
from input_pipeline import cli, mixture


def define_flags(fv: flags.FlagValues) -> None:
    cli.define_config_file(fv)
    flags.DEFINE_string("workdir", None, "Checkpoints, metrics and the resolved config go here: "
                        "a local folder or a gs:// URL.", flag_values=fv, required=True)
    flags.DEFINE_string("tensorboard_dir", None, "where the TensorBoard events go (a local "
                        "folder or gs://); default: the workdir", flag_values=fv)
    cli.define_jax_distributed(fv)


def _data_files(config) -> list[dict]:
    """The converted datasets the config resolves to, manifests included."""
    if config.data.source != "records":
        return []
    return [dataclasses.asdict(source)
            for source in mixture.resolve(config.data.datasets, config.data.data_dir)]


def _run(args: flags.FlagValues) -> int:
    workdir = cli.path_flag(args, "workdir")
    tensorboard_dir = cli.path_flag(args, "tensorboard_dir")
    config = cli.config_value(args)
    recipe.check(config)  # before the trainer divides by them
    quiet_orbax_logs()
    multihost.initialize(args.jax_distributed)
    multihost.check_hosts_agree({"--workdir": args.workdir,
                                 "--tensorboard_dir": args.tensorboard_dir,
                                 "config": config.to_dict(), "data": _data_files(config)})
    train_and_evaluate(config, workdir, tensorboard_dir)
    return cli.OK


# A loss that turned NaN is reported in one line: its message says what to do.
main = cli.binary(define_flags, _run, data_errors=(NonFiniteLossError,))


if __name__ == "__main__":
    cli.run_main(main)
