"""How many records of each shard the training stream reads: all of a sound shard, none
of a truncated one, the readable beginning of a corrupt one.

Before training, every shard's size is compared with the manifest's: a shard of another
size was cut short or replaced, and none of it is read. A shard found corrupt while
reading (a record failing its checksum, or a file that cannot be opened any more) is
read once more on its own to find how many records precede the damage; only those are
read from then on. Both are logged with the file's name and counted (`lost`), never
fatal unless a dataset has nothing readable left. What is read stays a function of the
files, so a resumed stream (which finds the same damage again) continues exactly.
"""
from __future__ import annotations

import collections
import logging
import re

import numpy as np
import tensorflow as tf

from input_pipeline import paths

# Errors of reading a shard: DataLossError (checksum, truncated record), NotFoundError and
# PermissionDeniedError (the file went away), FailedPreconditionError (a folder).
READ_ERRORS = (tf.errors.DataLossError, tf.errors.NotFoundError,
               tf.errors.PermissionDeniedError, tf.errors.FailedPreconditionError)
ALL = -1  # records to read of a sound shard


class UnreadableDataError(ValueError):
    """A dataset has no readable shard left, or a read error that no shard explains."""


class ShardReading:
    """Records to read per shard file, for the `sources` (input_pipeline.mixture.Source)."""

    def __init__(self, sources):
        self._sources = sources
        self._expected = {path: count for s in sources for path, count in s.shards()}
        self._readable: dict[str, int] = {}  # damaged shard -> records before the damage
        # Files opened most recently: where a read error can have come from.
        self._opened: collections.deque[str] = collections.deque(maxlen=64 * len(sources))
        for source in sources:
            for path, expected in source.shard_bytes.items():
                size = paths.as_path(path).stat().length
                if size != expected:
                    self._mark(path, 0, f"{size} bytes, the manifest says {expected}")
        self._check_each_dataset_readable()

    @property
    def sources(self):
        return self._sources

    @property
    def lost(self) -> int:
        """Records of damaged shards that are not read (per pass over the data)."""
        return sum(self._expected[path] - n for path, n in self._readable.items())

    def records_to_read(self, path: tf.Tensor) -> tf.Tensor:
        """int64 scalar: how many records of the shard at `path` to read (ALL: every one)."""
        # Declared stateless: a stateful op in the stream makes tf.data log a warning at
        # every save of its position. The answer is a function of `path` and of what
        # `diagnose` found, and the stream is restored (files reopened) after each find.
        count = tf.numpy_function(self._records_to_read, [path], tf.int64, stateful=False)
        return tf.ensure_shape(count, [])

    def _records_to_read(self, path: bytes) -> np.int64:
        path = path.decode()
        self._opened.append(path)
        return np.int64(self._readable.get(path, ALL))

    def diagnose(self, error: Exception) -> None:
        """After `error` from the stream: finds the damaged shards among those opened
        lately and limits their reading; raises UnreadableDataError if none is."""
        found = []
        for path in dict.fromkeys(reversed(self._opened)):
            if path in self._readable:
                continue
            readable, problem = _readable_prefix(path, self._expected[path])
            if problem is not None:
                self._mark(path, readable, problem)
                found.append(path)
        if not found:
            raise UnreadableDataError(f"reading the training data failed and no shard read "
                                      f"lately is damaged: {_first_line(error)}")
        self._check_each_dataset_readable()

    def _mark(self, path: str, readable: int, problem: str) -> None:
        self._readable[path] = readable
        logging.warning("shard %s is damaged (%s): reading its first %d of %d records, "
                        "skipping %d.", path, problem, readable, self._expected[path],
                        self._expected[path] - readable)

    def _check_each_dataset_readable(self) -> None:
        for source in self._sources:
            paths = [path for path, _ in source.shards()]
            if all(self._readable.get(p, ALL) == 0 for p in paths):
                raise UnreadableDataError(
                    f"{source.folder}: no shard of dataset {source.name!r} is readable "
                    f"({len(paths)} damaged, e.g. {paths[0]}); convert it again.")


def _readable_prefix(path: str, expected: int) -> tuple[int, str | None]:
    """(records readable before the damage, the damage or None for a sound shard)."""
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except READ_ERRORS as e:
        return count, _first_line(e)
    if count != expected:
        return min(count, expected), f"{count} records, the manifest says {expected}"
    return count, None


def _first_line(error: Exception) -> str:
    """The message of a TensorFlow error without its op and function annotations."""
    message = getattr(error, "message", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\]( name: \S*)?", "", message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
