"""The training stream on damaged data: it skips and counts, stops with the reason when
little is usable, and never waits forever."""
import json
import logging
import os
import threading

import numpy as np
import pytest

from input_pipeline import records
from input_pipeline.resumable import ResumableBatches, SkippedTooManyError
from input_pipeline.shards import UnreadableDataError
from tests.test_train_dataset import make_config, stream_ids
from tests.train_records import write_dataset


def _stream(config, **kw):
    return ResumableBatches(config, process_index=0, process_count=1, **kw)


def _shard(folder, index):
    return folder / records.read_manifest(folder)["shards"][index]["file"]


def _corrupt_middle(path):
    """Overwrites bytes inside a record: the file keeps its size, a checksum fails."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def test_a_truncated_shard_is_not_read_and_counted(tmp_path, caplog):
    folder = write_dataset(tmp_path / "d", "d", (5, 6, 7))
    shard = _shard(folder, 1)
    shard.write_bytes(shard.read_bytes()[:-300])
    stream = _stream(make_config(tmp_path, {"d": 1.0}))
    for _ in range(8):  # 32 examples: more than two passes over the 12 readable ones
        next(stream)
    assert stream.lost == 6 and stream.skipped == 0
    assert f"shard {shard} is damaged" in caplog.text and "the manifest says" in caplog.text


@pytest.mark.parametrize("save_every", [1, 3])
def test_a_corrupt_shard_is_read_up_to_the_damage_and_resumes_exactly(tmp_path, caplog,
                                                                       save_every):
    folder = write_dataset(tmp_path / "d", "d", (5, 6, 7))
    _corrupt_middle(_shard(folder, 2))
    config = make_config(tmp_path, {"d": 1.0}, shuffle_buffer=3)
    stream = _stream(config, chunk=5, save_every=save_every)
    first = [next(stream) for _ in range(4)]
    state = json.loads(json.dumps(stream.state()))
    after = [next(stream) for _ in range(6)]
    assert 0 < stream.lost < 7 and stream.skipped == 0
    assert "is damaged (corrupted record at" in caplog.text
    # A new stream restored from the saved position finds the damage again, and goes on
    # with the same batches.
    resumed = _stream(config, chunk=5, save_every=save_every)
    resumed.restore(state)
    for want in after:
        got = next(resumed)
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
        np.testing.assert_array_equal(got["images"], want["images"])
    assert first  # (the batches before the save are not compared)


def test_a_dataset_of_garbage_frames_is_named(tmp_path):
    folder = write_dataset(tmp_path / "d", "d", (4, 4))
    for index in (0, 1):
        shard = _shard(folder, index)
        shard.write_bytes(os.urandom(shard.stat().st_size))  # the right size, no records
    stream = _stream(make_config(tmp_path, {"d": 1.0}))
    with pytest.raises(UnreadableDataError, match=f"{folder}: no shard of dataset 'd' is readable"):
        next(stream)


def test_a_stream_of_only_undecodable_examples_stops_with_the_reason(tmp_path):
    every = {(0, i) for i in range(40)}
    write_dataset(tmp_path / "d", "d", (40,), bad=every)
    config = make_config(tmp_path, {"d": 1.0})
    config.data.max_skipped_in_a_row = 100
    with pytest.raises(SkippedTooManyError, match=r"examples in a row were skipped .*"
                       r"data.max_skipped_in_a_row=100\) in " + str(tmp_path / "d")):
        next(_stream(config))


def test_too_large_a_share_of_skipped_examples_stops_the_stream(tmp_path):
    # Every tenth example of 1200 is undecodable: 10% skipped against a limit of 5%.
    write_dataset(tmp_path / "d", "d", (1200,), bad={(0, i) for i in range(0, 1200, 10)})
    config = make_config(tmp_path, {"d": 1.0}, global_batch=100)
    config.data.augment.image_size = config.model.vision.image_size = 32
    stream = _stream(config)
    with pytest.raises(SkippedTooManyError, match=r"^100 of 1000 examples were skipped"):
        for _ in range(20):
            next(stream)
    config.data.max_skipped_fraction = 0.2
    stream = _stream(config)
    for _ in range(20):
        next(stream)
    assert stream.skipped == 223  # 2000 delivered: the good ones of the first 2223


def test_a_tiny_dataset_with_a_large_shuffle_buffer_is_shuffled_in_one_block(tmp_path,
                                                                             caplog):
    caplog.set_level(logging.INFO)
    write_dataset(tmp_path / "d", "d", (40,))
    config = make_config(tmp_path, {"d": 1.0}, shuffle_buffer=10_000)
    ids = stream_ids(config, 80)
    # Before, a block waited for 10,000 examples: 250 passes over the data.
    assert sorted(ids[:40]) == sorted(ids[40:]) == sorted(f"d/0/{i}" for i in range(40))
    assert ids[:40] != ids[40:]
    assert "shuffling blocks of 40, this host's examples" in caplog.text


def test_the_trainers_reader_gives_up_on_a_stop_request_and_ends_on_close(tmp_path):
    from groupvit_jax.train.batches import Interrupted, RecordBatches

    write_dataset(tmp_path / "d", "d", (40,), bad={(0, i) for i in range(40)})
    config = make_config(tmp_path, {"d": 1.0})
    config.data.max_skipped_in_a_row = 10 ** 9  # a stream that never yields a batch
    stop = threading.Event()
    batches = RecordBatches(config, tmp_path / "w", 0, stop.is_set)
    threading.Timer(1.0, stop.set).start()
    with pytest.raises(Interrupted):
        next(batches)
    batches.close()
    write_dataset(tmp_path / "good", "good", (40,))
    config = make_config(tmp_path, {"good": 1.0})
    before = set(threading.enumerate())
    batches = RecordBatches(config, tmp_path / "w", 0)
    assert next(batches)["images"].shape == (4, 64, 64, 3)
    (reader,) = set(threading.enumerate()) - before
    assert reader.is_alive()  # reading ahead
    batches.close()
    reader.join(timeout=30)
    assert not reader.is_alive()
