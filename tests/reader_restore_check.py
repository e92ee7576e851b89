"""Run in a subprocess (a hang must fail its test, not block the run): the undecoded stream,
saved after each of its first records and restored into a fresh iterator and into the same
one (as input_pipeline.resumable does after a read error), continues with the same records.

    python -m tests.reader_restore_check FOLDER
"""
import sys
from pathlib import Path

from input_pipeline.train_dataset import serialized_stream
from tests.test_train_dataset import make_config
from tests.train_records import write_dataset

SAVE_POINTS = 12  # tf.data's background readers get time to run ahead between saves
AFTER = 30        # records compared after each restore: several files are opened


def _records(iterator, count):
    return [next(iterator)["record"].numpy() for _ in range(count)]


def main(folder: Path) -> None:
    write_dataset(folder / "a", "a", (5, 6, 7, 8))
    write_dataset(folder / "b", "b", (4, 9))
    config = make_config(folder, {"a": 1.0, "b": 1.0}, shuffle_buffer=3)
    stream = serialized_stream(config, 0, 1, seed=0)
    for save_after in range(SAVE_POINTS):
        iterator = iter(stream)
        _records(iterator, save_after)
        state = iterator._save()
        expected = _records(iterator, AFTER)
        fresh = iter(stream)
        fresh._restore(state)
        assert _records(fresh, AFTER) == expected, f"fresh restore after {save_after}"
        iterator._restore(state)
        assert _records(iterator, AFTER) == expected, f"in-place restore after {save_after}"
    print("restored streams continue exactly")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
