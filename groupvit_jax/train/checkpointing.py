"""Orbax checkpoints of the train state: async, atomic, keep-last-k, auto-resume; and
each process's input-pipeline position saved with them."""
from __future__ import annotations

import json
import logging
import time
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath

from input_pipeline import paths


def manager(workdir, every_steps: int, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(save_interval_steps=every_steps, max_to_keep=keep,
                                           enable_async_checkpointing=True)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def checkpoint_dir(workdir) -> epath.Path:
    return paths.absolute(workdir) / "checkpoints"


def saved_steps(workdir) -> list[int]:
    """The steps with a checkpoint folder, without opening Orbax."""
    folder = checkpoint_dir(workdir)
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []


def set_aside_dir(workdir) -> epath.Path:
    """Where unreadable checkpoints are moved: kept for inspection, out of Orbax's way."""
    return paths.absolute(workdir) / "unreadable_checkpoints"


def restore_latest(workdir, every_steps: int, keep: int, state):
    """(state, manager): the newest checkpoint that restores into `state`'s shapes and
    shardings, else `state` itself. A newer checkpoint that cannot be read (truncated,
    corrupt, non-finite) is moved to `set_aside_dir` with a warning; when none can be, the
    error names every step and why."""
    failures = []
    while True:
        mgr = manager(workdir, every_steps, keep)
        steps = sorted(mgr.all_steps(), reverse=True)
        step = next((s for s in steps if s not in dict(failures)), None)
        if step is None:
            if failures:
                mgr.close()
                raise CheckpointError(workdir, failures)
            return state, mgr
        try:
            restored = _restore(mgr, step, state)
        except Exception as e:  # noqa: BLE001 - Orbax and tensorstore raise many kinds
            failures.append((step, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
            mgr.close()
            continue
        for broken, reason in failures:
            logging.warning("checkpoint step %d is unreadable (%s): moved to %s; resuming "
                            "from step %d.", broken, reason, set_aside_dir(workdir), step)
            set_aside_dir(workdir).mkdir(exist_ok=True)
            (checkpoint_dir(workdir) / str(broken)).rename(
                set_aside_dir(workdir) / f"{broken}-{int(time.time())}")
        if failures:  # Orbax lists the steps when it opens: open it again without them
            mgr.close()
            mgr = manager(workdir, every_steps, keep)
        return restored, mgr


class CheckpointError(ValueError):
    """No checkpoint of a workdir restores (a ValueError: the binaries report it in one line)."""

    def __init__(self, workdir, failures: list[tuple[int, str]]):
        steps = "; ".join(f"step {step}: {reason}" for step, reason in failures)
        super().__init__(
            f"{checkpoint_dir(workdir)}: no checkpoint can be restored ({steps}). If the "
            f"config changed since the run began, resume with the one in "
            f"{paths.as_path(workdir) / 'config.json'}; else train in a new workdir.")


def _restore(mgr: ocp.CheckpointManager, step: int, state):
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = mgr.restore(step, args=ocp.args.StandardRestore(target))
    finite = jax.tree.map(lambda x: jnp.isfinite(x).all() if jnp.issubdtype(
        x.dtype, jnp.floating) else True, restored.params)
    bad = [jax.tree_util.keystr(path) for path, ok in
           jax.tree_util.tree_leaves_with_path(finite) if not ok]
    if bad:
        raise ValueError(f"non-finite values in params{bad[0]} ({len(bad)} arrays)")
    return restored


def save(mgr: ocp.CheckpointManager, state, force: bool = False) -> bool:
    return mgr.save(int(state.step), args=ocp.args.StandardSave(state), force=force)


def data_state_dir(workdir) -> epath.Path:
    """Per-process input-pipeline positions, one folder per saved step beside Orbax's."""
    return paths.absolute(workdir) / "data_state"


def save_data_state(workdir, step: int, process_index: int, state: dict,
                    keep_steps: set[int]) -> None:
    """Writes this process's data position for `step` (atomically) and deletes the ones of
    steps Orbax no longer keeps."""
    path = data_state_dir(workdir) / str(step) / f"process_{process_index}.json"
    paths.write_atomically(path, json.dumps(state).encode())
    prune_data_states(workdir, process_index, keep_steps | {step})


def prune_data_states(workdir, process_index: int, keep_steps: set[int]) -> None:
    """Deletes this process's data positions of steps whose checkpoints Orbax deleted."""
    if not data_state_dir(workdir).is_dir():
        return
    for folder in data_state_dir(workdir).iterdir():
        if folder.name.isdigit() and int(folder.name) not in keep_steps:
            (folder / f"process_{process_index}.json").unlink(missing_ok=True)
            # In a bucket a folder is gone with its last file.
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def restore_data_state(workdir, step: int, process_index: int) -> dict | None:
    path = data_state_dir(workdir) / str(step) / f"process_{process_index}.json"
    return json.loads(path.read_text()) if path.is_file() else None
