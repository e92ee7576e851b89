"""The trainer's batch sources (`config.data.source`), each resumable at a step.

  "synthetic"  input_pipeline.synthetic_data: a pure function of (seed, step).
  "records"    converted datasets through input_pipeline (ResumableBatches); its position
               is saved per process next to each train checkpoint and restored with it.
"""
from __future__ import annotations

import logging
import queue
import threading

import jax

from groupvit_jax.train import checkpointing
from groupvit_jax.models.config import GroupViTConfig
from input_pipeline.synthetic_data import synthetic_batch

SOURCES = ("synthetic", "records")
POLL_SECONDS = 0.25  # how often a wait for a batch looks for a stop request


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

    def close(self) -> None:
        pass  # nothing runs ahead

    def metrics(self) -> dict:
        return {}


class Interrupted(Exception):
    """The wait for a batch was given up: a stop was requested."""


class RecordBatches:
    """Batches read ahead by a thread, so that waiting for one can be given up when
    `stop_requested()` turns true (SIGTERM) however long the stream takes."""

    def __init__(self, config, workdir, start_step: int, stop_requested=lambda: False):
        from input_pipeline.resumable import ResumableBatches

        self._stream = ResumableBatches(config)
        if start_step > 0:
            state = checkpointing.restore_data_state(workdir, start_step, jax.process_index())
            if state is None:
                logging.warning("no data position saved with step %d: the data stream "
                                "starts again from its beginning.", start_step)
            else:
                self._stream.restore(state)
        self._stop_requested = stop_requested
        self._position = self._stream.position  # after the last batch handed to the trainer
        self._skipped_logged = 0
        self._ready: queue.Queue = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        # A daemon: a thread stuck inside tf.data must not keep the process alive.
        threading.Thread(target=self._read, daemon=True, name="record_batches").start()

    def _read(self):
        while not self._closed.is_set():
            try:
                item = (next(self._stream), self._stream.position)
            except BaseException as e:  # noqa: BLE001 - handed to the trainer's thread
                item = e
            while not self._closed.is_set():
                try:
                    self._ready.put(item, timeout=POLL_SECONDS)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def close(self) -> None:
        """Stops reading ahead (the thread ends after the batch it is reading)."""
        self._closed.set()

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        while True:
            try:
                item = self._ready.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                if self._stop_requested():
                    raise Interrupted from None
        if isinstance(item, BaseException):
            raise item
        batch, self._position = item
        skipped = self._skipped()
        if skipped >= max(2 * self._skipped_logged, 1):  # 1, 2, 4, ...: never a flood
            logging.warning("%d examples skipped so far (undecodable or corrupt).", skipped)
            self._skipped_logged = skipped
        return batch

    def save(self, workdir, step: int, keep_steps: set[int]) -> None:
        checkpointing.save_data_state(workdir, step, jax.process_index(),
                                      self._stream.state(self._position), keep_steps)

    def metrics(self) -> dict:
        return {"data/skipped_examples": self._skipped(), "data/lost_records": self._stream.lost}

    def _skipped(self) -> int:
        last_index, delivered = self._position  # examples read through, examples handed out
        return last_index + 1 - delivered


def make_batches(config, model: GroupViTConfig, workdir, start_step: int,
                 stop_requested=lambda: False):
    """This host's batches for steps start_step + 1, ...; `.save(workdir, step, keep)`
    stores the position after `step`, `.metrics()` reports on the stream. Waiting for a
    batch raises Interrupted once `stop_requested()` is true."""
    if config.data.source == "synthetic":
        return SyntheticBatches(config, model, start_step)
    if config.data.source == "records":
        return RecordBatches(config, workdir, start_step, stop_requested)
    raise ValueError(f"data.source={config.data.source!r}; known: {SOURCES}.")
