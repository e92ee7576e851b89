"""`train_and_evaluate(config, workdir)`: trains (or resumes) to the config's total steps,
running the configured evaluators; the binary is `python -m groupvit_jax.train`.

Rerunning with the same workdir resumes from the latest checkpoint; SIGTERM
(preemption) saves one before exiting.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time

import jax
import numpy as np
from clu import metric_writers, periodic_actions

from groupvit_jax.checkpoints import pretrained
from groupvit_jax.evaluation import registry
from groupvit_jax.train.batches import Interrupted, make_batches
from groupvit_jax.train.extra_losses import ExtraLosses
from groupvit_jax.train import checkpointing, recipe, sharding
from groupvit_jax.train.step import create_train_state, make_train_step, text_lengths
from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.train.optim import make_optimizer
from input_pipeline import cli, paths


class NonFiniteLossError(FloatingPointError):
    pass


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps and while it waits for
    data; a second SIGTERM exits at once (SystemExit: cleanup still runs)."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del frame  # the signal handler's signature
        if self.requested:
            raise SystemExit(128 + signum)
        self.requested = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def _check_finite(metrics, step):
    bad = [k for k in ("loss", "loss_image_text", "loss_multi_label")
           if k in metrics and not np.isfinite(metrics[k])]
    if bad:
        terms = ", ".join(f"{k}={metrics[k]}" for k in bad)
        raise NonFiniteLossError(f"non-finite loss at step {step}: {terms}; the last checkpoint "
                                 "is intact (lower the learning rate or use float32).")


def _check_same_model(workdir, config) -> None:
    """A workdir with checkpoints resumes only with the model its run was trained with."""
    saved_file = workdir / "config.json"
    if not saved_file.is_file() or not checkpointing.saved_steps(workdir):
        return
    saved = cli.read_json(saved_file).get("model", {})
    now = json.loads(config.model.to_json_best_effort())
    changed = [f"model.{key}: {old!r} in {saved_file}, {new!r} now"
               for key, old, new in _differences(saved, now)]
    if changed:
        raise ValueError(f"{workdir}: this run's checkpoints are of another model ("
                         f"{'; '.join(changed[:5])}). Resume with the run's config, or train "
                         "in a new workdir.")


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _differences(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b


def _hide_gpus_from_tensorflow():
    """clu's TensorBoard writer runs on TensorFlow, which would otherwise grab GPU memory."""
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")


def train_and_evaluate(config, workdir: str | os.PathLike,
                       tensorboard_dir: str | os.PathLike | None = None) -> list[dict]:
    """Runs (or resumes) training to config's total steps; returns the logged metrics.

    `workdir` (checkpoints, data positions, config.json) and `tensorboard_dir` (the
    TensorBoard events; default: the workdir) are local folders or gs:// URLs.
    """
    _hide_gpus_from_tensorflow()
    workdir = paths.as_path(workdir)
    tensorboard_dir = workdir if tensorboard_dir is None else paths.as_path(tensorboard_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    model = GroupViTConfig.from_dict(config.model.to_dict())
    per_step = jax.device_count() * config.grad_accum_steps
    if config.data.global_batch % per_step:
        raise ValueError(f"data.global_batch={config.data.global_batch} is not divisible by "
                         f"{jax.device_count()} devices x grad_accum_steps="
                         f"{config.grad_accum_steps}.")
    _check_same_model(workdir, config)

    num_steps = recipe.total_steps(config)
    mesh = sharding.make_mesh(config.mesh.model)
    optimizer, schedule = make_optimizer(config.optim, config.data.global_batch, num_steps,
                                         recipe.warmup_steps(config))
    state, shardings = create_train_state(model, optimizer, mesh, config.seed,
                                                     config.data.num_prompts)
    state, ckpt = checkpointing.restore_latest(workdir, config.checkpoint_every_steps,
                                               config.keep_checkpoints, state)
    with contextlib.ExitStack() as cleanup:  # also when anything below fails
        cleanup.callback(_close_checkpoints, ckpt, workdir)
        start = int(state.step)
        if jax.process_index() == 0:  # only now: a failed resume leaves the config as it was
            (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
        extra = ExtraLosses.from_config(config.extra_losses, config.data.tokenizer,
                                        model.text.context_length)
        step_fn = make_train_step(model, optimizer, schedule, mesh, shardings,
                                  config.multi_label_weight, config.grad_accum_steps, extra)

        evals = registry.create(config.evals, config)
        writer = metric_writers.create_default_writer(tensorboard_dir,
                                                      just_logging=jax.process_index() > 0)
        cleanup.callback(writer.flush)
        progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer,
                                                   every_steps=config.log_every_steps)
        preemption = _Preemption()
        cleanup.callback(preemption.restore)
        batches = make_batches(config, model, workdir, start, lambda: preemption.requested)
        cleanup.callback(batches.close)
        history = []
        began = t0 = time.time()
        last_logged = start
        for step in range(start + 1, num_steps + 1):
            try:
                host_batch = next(batches)
            except Interrupted:
                _save_on_stop(ckpt, state, batches, workdir)
                break
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                # Tokens after the longest end-of-text change nothing: the text tower
                # runs at the batch's bucket lengths (the same on every host).
                lengths = sharding.host_max(text_lengths(host_batch["tokens"],
                                                         model.text.context_length))
                batch = sharding.make_global_batch(host_batch, mesh)
                state, device_metrics = step_fn(state, batch, lengths)
            metrics = jax.tree.map(float, device_metrics)
            _check_finite(metrics, step)
            progress(step)
            if step % config.log_every_steps == 0 or step == num_steps:
                seconds = time.time() - t0
                metrics["images_per_sec"] = (step - last_logged) * config.data.global_batch / seconds
                metrics.update(batches.metrics())
                writer.write_scalars(step, metrics)
                history.append({"step": step, **metrics})
                t0, last_logged = time.time(), step
            for name, every, run in evals:
                if step % every == 0 or step == num_steps:
                    # The state's variables, passed in; compiled code is shared across
                    # evaluations (it is keyed by the architecture, not these arrays).
                    eval_model = pretrained.PretrainedGroupViT(
                        model, {"params": state.params, "batch_stats": state.batch_stats})
                    scores = {f"{name}/{k}": v for k, v in run(eval_model).items()}
                    writer.write_scalars(step, scores)
                    # Wall seconds since this (re)start, evaluations included: the x of
                    # score-against-time curves.
                    history.append({"step": step, "seconds": time.time() - began, **scores})
            if checkpointing.save(ckpt, state, force=step == num_steps or preemption.requested):
                batches.save(workdir, step, set(ckpt.all_steps()))
            if preemption.requested:
                logging.warning("SIGTERM: saved step %d, exiting; rerun to resume.", step)
                break
    return history


def _close_checkpoints(ckpt, workdir) -> None:
    ckpt.wait_until_finished()
    # Orbax deletes old steps once a save completes: drop their data positions too.
    checkpointing.prune_data_states(workdir, jax.process_index(), set(ckpt.all_steps()))
    ckpt.close()


def _save_on_stop(ckpt, state, batches, workdir) -> None:
    """SIGTERM while waiting for data: the last finished step is saved (unless it is)."""
    step = int(state.step)
    if step > 0 and step not in ckpt.all_steps():
        checkpointing.save(ckpt, state, force=True)
        batches.save(workdir, step, set(ckpt.all_steps()))
    logging.warning("SIGTERM while waiting for data: step %d is saved, exiting; rerun to "
                    "resume.", step)


class _QuietOrbax:
    """Orbax logs every save step at INFO; keep the console for progress and metrics."""

    def filter(self, record):
        return "/orbax/" not in record.pathname or record.levelno >= 30


def quiet_orbax_logs() -> None:
    logging.getLogger("absl").addFilter(_QuietOrbax())
