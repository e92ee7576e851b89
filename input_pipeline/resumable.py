"""The training stream with a position that can be saved after any batch and restored.

The decoded part of the pipeline cannot be checkpointed by tf.data (skipping corrupt
examples is not supported by its symbolic checkpoints, and its explicit ones would store
every buffered image). So the cheap-to-checkpoint undecoded stream runs as its own
iterator, feeding the decoding pipeline in chunks of `chunk` records; before every
`save_every`-th chunk its state (a few cursors) is remembered. The state of "the next
example a batch will hold" is then the last state remembered before that example plus
how many examples came after it, which a restored stream skips (reading, not decoding,
them). States are not remembered before every chunk: saving one costs about as much as
reading a few hundred records.

The chunks pass from one tf.data pipeline to the other as tensors, through a
tf.py_function: never as numpy arrays, whose conversion copies every record twice.
"""
from __future__ import annotations

import base64

import numpy as np
import tensorflow as tf

from input_pipeline import train_dataset
from input_pipeline.shards import READ_ERRORS, ShardReading, UnreadableDataError

READER_VERSION = 2  # saved positions of another version address another stream
MAX_REMEMBERED_STATES = 256  # >> states between the reader and the trainer's last batch
MIN_READ_FOR_FRACTION = 1000  # examples read before data.max_skipped_fraction applies
_SIGNATURE = {"example_index": tf.int64, "source": tf.int32, "record": tf.string}


class SkippedTooManyError(ValueError):
    """More examples skipped in a row, or in all, than the config allows."""


class ResumableBatches:
    """Iterator of this host's batches {"images", "tokens"} (numpy), with `state()` and
    `restore(state)`; `skipped` counts examples dropped as corrupt or undecodable, `lost`
    the records of damaged shards that are not read (input_pipeline.shards).

    The stream stops with SkippedTooManyError when more than data.max_skipped_in_a_row
    examples in a row, or more than data.max_skipped_fraction of all examples read, are
    skipped: data that bad needs looking at, and a stream of nothing but bad records
    would otherwise never yield a batch."""

    def __init__(self, config, *, process_index: int | None = None,
                 process_count: int | None = None, seed: int | None = None, chunk: int = 256,
                 save_every: int = 16):
        process = train_dataset.resolve_process(config, process_index, process_count, seed)
        self._chunk = chunk
        self._save_every = save_every
        # The datasets are resolved once (manifests, TFDS metadata, shard sizes).
        self._shards = ShardReading(train_dataset.sources(config))
        self._serialized = iter(train_dataset.serialized_chunks(
            config, *process, chunk=chunk, shards=self._shards))
        self._feed = self._chunks()
        self.undecoded = tf.data.Dataset.range(2**62).map(self._next_chunk).take_while(
            lambda chunk: tf.size(chunk["record"]) > 0)
        """The chunks of records handed to decoding (for measuring the reader)."""
        self._dataset = train_dataset.prepared_batches(self.undecoded.unbatch(), config,
                                                       *process, watch=self._note_batch,
                                                       datasets=self._shards.sources)
        self._batches = None  # started on the first next(), after any restore
        self._states: dict[int, bytes] = {}  # chunk -> the reader's state before it
        self._read_chunk = 0  # the chunk self._serialized reads next
        self._feed_from = 0   # example_index of the next example to hand to decoding
        self._last_index = -1  # example_index of the last example handed out
        self._delivered = 0    # examples handed out since the stream began
        self._max_in_a_row = config.data.max_skipped_in_a_row
        self._max_fraction = config.data.max_skipped_fraction
        # Between the reader and a finished batch: a chunk being unbatched, the examples
        # being decoded in parallel and the batch being filled. More unfinished records
        # than that plus the allowed run of skips means nothing comes out.
        host_batch = config.data.global_batch // process[1]
        self._stall_limit = self._max_in_a_row + 2 * chunk + host_batch + 4 * config.data.num_threads
        self._batched_through = -1  # example_index of the last example in a finished batch
        self._failure: Exception | None = None  # why the reader stopped, for __next__

    def _remember_state(self):
        # tf.data's own checkpoints use the same _save/_restore pair; here the state
        # is needed in memory.
        self._states[self._read_chunk] = self._serialized._save().numpy()
        if len(self._states) > MAX_REMEMBERED_STATES:
            del self._states[min(self._states)]

    def _next_chunk(self, _) -> dict[str, tf.Tensor]:
        chunk = tf.py_function(self._next_chunk_tensors, [], list(_SIGNATURE.values()))
        return {key: tf.ensure_shape(value, [None]) for key, value in zip(_SIGNATURE, chunk)}

    def _next_chunk_tensors(self) -> list[tf.Tensor]:
        chunk = next(self._feed, None)
        if chunk is None:  # the end: an empty chunk
            return [tf.zeros([0], dtype) for dtype in _SIGNATURE.values()]
        return [chunk[key] for key in _SIGNATURE]

    def _chunks(self):
        # Runs inside tf.data, whose error skipping downstream would swallow an exception
        # raised here: a failure is kept for __next__, and the stream ends.
        self._remember_state()
        while True:
            unfinished = self._feed_from - 1 - self._batched_through  # fed, in no batch yet
            if unfinished > self._stall_limit:
                self._failure = self._too_many_in_a_row(unfinished)
                return
            try:
                chunk = next(self._serialized)
            except READ_ERRORS as e:
                try:
                    self._shards.diagnose(e)
                except UnreadableDataError as unreadable:
                    self._failure = unreadable
                    return
                # Read again from the last state remembered, now without the damaged
                # shards' bad part; what was fed already is skipped.
                self._read_chunk = max(c for c in self._states if c <= self._read_chunk)
                self._serialized._restore(tf.constant(self._states[self._read_chunk]))
                continue
            start = self._read_chunk * self._chunk
            self._read_chunk += 1
            if self._read_chunk % self._save_every == 0:
                self._remember_state()
            if self._feed_from >= start + self._chunk:
                continue
            skip = self._feed_from - start
            self._feed_from = start + self._chunk
            yield {key: value[skip:] if skip else value for key, value in chunk.items()}

    def _note_batch(self, example_index: np.ndarray) -> np.ndarray:
        self._batched_through = int(example_index[-1])
        return example_index

    def _too_many_in_a_row(self, count: int) -> SkippedTooManyError:
        return SkippedTooManyError(
            f"{count} examples in a row were skipped (undecodable images or unparsable "
            f"records; data.max_skipped_in_a_row={self._max_in_a_row}) in "
            f"{self._folders()}; check that data, or raise the "
            "limit.")

    def _folders(self) -> str:
        return ", ".join(s.folder for s in self._shards.sources)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._batches is None:
            self._batches = self._dataset.as_numpy_iterator()
        try:
            batch = next(self._batches)
        except StopIteration:
            if self._failure is not None:
                raise self._failure from None
            raise
        index = batch.pop("example_index")
        in_a_row = int(np.max(np.diff(index, prepend=self._last_index))) - 1
        self._last_index = int(index[-1])
        self._delivered += len(index)
        if in_a_row > self._max_in_a_row:
            raise self._too_many_in_a_row(in_a_row)
        read = self._last_index + 1
        if read >= MIN_READ_FOR_FRACTION and self.skipped > self._max_fraction * read:
            raise SkippedTooManyError(
                f"{self.skipped} of {read} examples were skipped (undecodable images or "
                f"unparsable records; data.max_skipped_fraction={self._max_fraction}) in "
                f"{self._folders()}; check that data, or raise "
                "the limit.")
        return batch

    @property
    def skipped(self) -> int:
        return self._last_index + 1 - self._delivered

    @property
    def lost(self) -> int:
        return self._shards.lost

    @property
    def position(self) -> tuple[int, int]:
        """Where the stream is, after the last batch handed out: for `state(position)`."""
        return self._last_index, self._delivered

    def state(self, position: tuple[int, int] | None = None) -> dict:
        """JSON-able position after the last batch handed out (or at `position`)."""
        last_index, delivered = position or self.position
        wanted = (last_index + 1) // self._chunk
        states = dict(self._states)  # a copy: the reader's thread adds and drops states
        chunk = max((c for c in states if c <= wanted), default=None)
        if chunk is None:
            raise RuntimeError(f"the reader's state before chunk {wanted} was not kept "
                               f"(kept {min(states, default=None)}..); raise "
                               "MAX_REMEMBERED_STATES.")
        return {"reader_version": READER_VERSION, "chunk_size": self._chunk, "chunk": chunk,
                "skip": last_index + 1 - chunk * self._chunk,
                "reader": base64.b64encode(states[chunk]).decode("ascii"),
                "last_index": last_index, "delivered": delivered}

    def restore(self, state: dict) -> None:
        """Continue after the batch `state` was taken at; only before the first batch."""
        if self._batches is not None:
            raise RuntimeError("restore() must come before the first batch is read.")
        version = state.get("reader_version", 1)
        if version != READER_VERSION:
            raise ValueError(
                f"this data position was saved by version {version} of the training "
                f"stream's reader, which orders the examples differently from this one "
                f"(version {READER_VERSION}): resume with the code that saved it, or remove "
                "the workdir's data_state folder to start the data stream from its "
                "beginning.")
        if state["chunk_size"] != self._chunk:
            raise ValueError(f"saved with chunks of {state['chunk_size']}, reading {self._chunk}")
        self._serialized._restore(tf.constant(base64.b64decode(state["reader"])))
        self._read_chunk = state["chunk"]
        self._feed_from = state["chunk"] * self._chunk + state["skip"]
        self._last_index = state["last_index"]
        self._delivered = state["delivered"]
        self._batched_through = self._last_index
