"""Orbax checkpoints of the train state: async, atomic, keep-last-k, auto-resume."""
from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


def manager(workdir, every_steps: int, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(save_interval_steps=every_steps, max_to_keep=keep,
                                           enable_async_checkpointing=True)
    return ocp.CheckpointManager(Path(workdir).absolute() / "checkpoints", options=options)


def restore_or(mgr: ocp.CheckpointManager, state):
    """The latest checkpoint restored into `state`'s shapes and shardings, else `state`."""
    step = mgr.latest_step()
    if step is None:
        return state
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    return mgr.restore(step, args=ocp.args.StandardRestore(target))


def save(mgr: ocp.CheckpointManager, state, force: bool = False) -> bool:
    return mgr.save(int(state.step), args=ocp.args.StandardSave(state), force=force)
