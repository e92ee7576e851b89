"""The trainer's batch sources (`config.data.source`), each resumable at a step.

  "synthetic"  input_pipeline.synthetic_data: a pure function of (seed, step).
  "records"    converted datasets through input_pipeline (ResumableBatches); its position
               is saved per process next to each train checkpoint and restored with it.
"""
from __future__ import annotations

import logging

import jax

from groupvit_jax.train import checkpointing
from groupvit_jax.models.config import GroupViTConfig
from input_pipeline.synthetic_data import synthetic_batch

SOURCES = ("synthetic", "records")


class SyntheticBatches:
    def __init__(self, config, model: GroupViTConfig, start_step: int):
        self._config, self._model, self._step = config, model, start_step

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        c, m = self._config, self._model
        batch = synthetic_batch(self._step, c.data.global_batch, m.vision.image_size,
                                c.data.num_prompts, m.text.context_length, m.text.vocab_size,
                                c.seed)
        self._step += 1
        return batch

    def save(self, workdir, step: int, keep_steps: set[int]) -> None:
        del workdir, step, keep_steps  # a function of the step: nothing to save

    def metrics(self) -> dict:
        return {}


class RecordBatches:
    def __init__(self, config, workdir, start_step: int):
        from input_pipeline.resumable import ResumableBatches

        self._stream = ResumableBatches(config)
        if start_step > 0:
            state = checkpointing.restore_data_state(workdir, start_step, jax.process_index())
            if state is None:
                logging.warning("no data position saved with step %d: the data stream "
                                "starts again from its beginning.", start_step)
            else:
                self._stream.restore(state)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._stream)

    def save(self, workdir, step: int, keep_steps: set[int]) -> None:
        checkpointing.save_data_state(workdir, step, jax.process_index(), self._stream.state(),
                                      keep_steps)

    def metrics(self) -> dict:
        return {"data/skipped_examples": self._stream.skipped}


def make_batches(config, model: GroupViTConfig, workdir, start_step: int):
    """This host's batches for steps start_step + 1, ...; `.save(workdir, step, keep)`
    stores the position after `step`, `.metrics()` reports on the stream."""
    if config.data.source == "synthetic":
        return SyntheticBatches(config, model, start_step)
    if config.data.source == "records":
        return RecordBatches(config, workdir, start_step)
    raise ValueError(f"data.source={config.data.source!r}; known: {SOURCES}.")
