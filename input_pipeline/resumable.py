"""The training stream with a position that can be saved after any batch and restored.

The decoded part of the pipeline cannot be checkpointed by tf.data (skipping corrupt
examples is not supported by its symbolic checkpoints, and its explicit ones would store
every buffered image). So the cheap-to-checkpoint undecoded stream runs as its own
iterator, feeding the decoding pipeline in chunks of `chunk` records; before each chunk
its state (a few cursors) is remembered. The state of "the next example a batch will
hold" is then the state before that example's chunk plus how many of the chunk's
examples were already used, which a restored stream skips.
"""
from __future__ import annotations

import base64

import numpy as np
import tensorflow as tf

from input_pipeline import train_dataset

MAX_REMEMBERED_CHUNKS = 4096  # >> chunks in flight between the reader and the trainer


class ResumableBatches:
    """Iterator of this host's batches {"images", "tokens"} (numpy), with `state()` and
    `restore(state)`; `skipped` counts examples dropped as corrupt or undecodable."""

    def __init__(self, config, *, process_index: int | None = None,
                 process_count: int | None = None, seed: int | None = None, chunk: int = 256):
        process = train_dataset.resolve_process(config, process_index, process_count, seed)
        self._chunk = chunk
        self._serialized = iter(train_dataset.serialized_stream(config, *process).batch(chunk))
        signature = {"example_index": tf.TensorSpec([None], tf.int64),
                     "source": tf.TensorSpec([None], tf.int32),
                     "record": tf.TensorSpec([None], tf.string)}
        chunks = tf.data.Dataset.from_generator(self._chunks, output_signature=signature)
        self._dataset = train_dataset.prepared_batches(chunks.unbatch(), config, *process)
        self._batches = None  # started on the first next(), after any restore
        self._states: dict[int, bytes] = {}
        self._next_chunk = 0
        self._skip_in_next_chunk = 0
        self._last_index = -1  # example_index of the last example handed out
        self._delivered = 0    # examples handed out since the stream began

    def _remember_state(self):
        # tf.data's own checkpoints use the same _save/_restore pair; here the state
        # is needed in memory, once per chunk.
        self._states[self._next_chunk] = self._serialized._save().numpy()
        self._states.pop(self._next_chunk - MAX_REMEMBERED_CHUNKS, None)

    def _chunks(self):
        self._remember_state()
        while True:
            chunk = {k: v.numpy() for k, v in next(self._serialized).items()}
            self._next_chunk += 1
            self._remember_state()  # before the next chunk, so the last one is never missing
            skip, self._skip_in_next_chunk = self._skip_in_next_chunk, 0
            yield {k: v[skip:] for k, v in chunk.items()}

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._batches is None:
            self._batches = self._dataset.as_numpy_iterator()
        batch = next(self._batches)
        index = batch.pop("example_index")
        self._last_index = int(index[-1])
        self._delivered += len(index)
        return batch

    @property
    def skipped(self) -> int:
        return self._last_index + 1 - self._delivered

    def state(self) -> dict:
        """JSON-able position after the last batch handed out."""
        chunk, skip = divmod(self._last_index + 1, self._chunk)
        if chunk not in self._states:
            raise RuntimeError(f"the reader's state before chunk {chunk} was not kept "
                               f"(kept {min(self._states, default=None)}..); raise "
                               "MAX_REMEMBERED_CHUNKS.")
        return {"chunk_size": self._chunk, "chunk": chunk, "skip": skip,
                "reader": base64.b64encode(self._states[chunk]).decode("ascii"),
                "last_index": self._last_index, "delivered": self._delivered}

    def restore(self, state: dict) -> None:
        """Continue after the batch `state` was taken at; only before the first batch."""
        if self._batches is not None:
            raise RuntimeError("restore() must come before the first batch is read.")
        if state["chunk_size"] != self._chunk:
            raise ValueError(f"saved with chunks of {state['chunk_size']}, reading {self._chunk}")
        self._serialized._restore(tf.constant(base64.b64decode(state["reader"])))
        self._next_chunk = state["chunk"]
        self._skip_in_next_chunk = state["skip"]
        self._last_index = state["last_index"]
        self._delivered = state["delivered"]
