"""Orbax checkpoints of the train state: async, atomic, keep-last-k, auto-resume; and
each process's input-pipeline position saved with them."""
from __future__ import annotations

import json
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


def data_state_dir(workdir) -> Path:
    """Per-process input-pipeline positions, one folder per saved step beside Orbax's."""
    return Path(workdir).absolute() / "data_state"


def save_data_state(workdir, step: int, process_index: int, state: dict,
                    keep_steps: set[int]) -> None:
    """Writes this process's data position for `step` (atomically) and deletes the ones of
    steps Orbax no longer keeps."""
    folder = data_state_dir(workdir) / str(step)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"process_{process_index}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)
    prune_data_states(workdir, process_index, keep_steps | {step})


def prune_data_states(workdir, process_index: int, keep_steps: set[int]) -> None:
    """Deletes this process's data positions of steps whose checkpoints Orbax deleted."""
    if not data_state_dir(workdir).is_dir():
        return
    for folder in data_state_dir(workdir).iterdir():
        if folder.name.isdigit() and int(folder.name) not in keep_steps:
            (folder / f"process_{process_index}.json").unlink(missing_ok=True)
            if not any(folder.iterdir()):
                folder.rmdir()


def restore_data_state(workdir, step: int, process_index: int) -> dict | None:
    path = data_state_dir(workdir) / str(step) / f"process_{process_index}.json"
    return json.loads(path.read_text()) if path.is_file() else None
