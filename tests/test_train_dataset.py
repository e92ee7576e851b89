"""The training input pipeline: sharding, determinism, resume, skipping, mixtures."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from tensorflow.core.example import example_pb2

from input_pipeline.templates import CLIP_80
from input_pipeline.clip_tokenizer import get_tokenizer
from input_pipeline import fields, mixture
from input_pipeline.resumable import ResumableBatches
from input_pipeline.train_dataset import create_train_dataset, serialized_stream
from tests.tfds_data import CAPTIONS, write_captions
from tests.train_records import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def make_config(tmp_path, datasets, global_batch=4, shuffle_buffer=1, randaugment=None):
    spec = importlib.util.spec_from_file_location("cfg", ROOT / "configs/gcc_yfcc_2stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("runlocal")
    config.data.source = "records"
    config.data.data_dir = str(tmp_path)
    config.data.datasets = datasets
    config.data.global_batch = global_batch
    config.data.shuffle_buffer = shuffle_buffer
    config.data.num_threads = 2
    config.data.augment.randaugment = randaugment
    return config


def stream_ids(config, count, process_index=0, process_count=1):
    ds = serialized_stream(config, process_index, process_count, seed=0).take(count)
    out = []
    for element in ds.as_numpy_iterator():
        example = example_pb2.Example.FromString(element["record"])
        out.append(example.features.feature["id"].bytes_list.value[0].decode())
    return out


@pytest.mark.parametrize("shard_sizes", [(3, 4, 5, 6), (10,)], ids=["shards", "one_shard"])
def test_two_hosts_read_the_even_halves_tfds_gives_them(tmp_path, shard_sizes):
    import tensorflow_datasets as tfds
    write_dataset(tmp_path / "d", "d", shard_sizes)
    config = make_config(tmp_path, {"d": 1.0})
    in_order = [f"d/{s}/{i}" for s, n in enumerate(shard_sizes) for i in range(n)]
    half = len(in_order) // 2
    parts = [set(in_order[:half]), set(in_order[half:])]  # tfds.even_splits
    builder = tfds.builder_from_directory(str(tmp_path / "d"))
    for h, part in enumerate(parts):
        split = tfds.split_for_jax_process("train", process_index=h, process_count=2)
        ids = {e["id"].decode() for e in tfds.as_numpy(builder.as_dataset(split=split))}
        assert ids == part
    seen = [set(stream_ids(config, 60, h, 2)) for h in (0, 1)]  # several epochs each
    assert seen == parts


def test_more_hosts_than_examples_is_a_clear_error(tmp_path):
    write_dataset(tmp_path / "d", "d", (2,))
    with pytest.raises(ValueError, match="dataset d has 2 examples, fewer than the 3 hosts"):
        stream_ids(make_config(tmp_path, {"d": 1.0}), 1, 2, 3)


def test_block_shuffle_permutes_within_blocks(tmp_path):
    write_dataset(tmp_path / "d", "d", (8,))
    ids = stream_ids(make_config(tmp_path, {"d": 1.0}, shuffle_buffer=4), 8)
    assert sorted(ids[:4]) == [f"d/0/{i}" for i in range(4)]
    assert sorted(ids[4:]) == [f"d/0/{i}" for i in range(4, 8)]
    assert ids != sorted(ids)


def _batches(config, n, **kw):
    it = create_train_dataset(config, process_index=0, process_count=1, **kw).as_numpy_iterator()
    return [next(it) for _ in range(n)]


def test_fixed_seed_gives_the_same_batches_and_another_seed_others(tmp_path):
    write_dataset(tmp_path / "d", "d", (6, 6))
    config = make_config(tmp_path, {"d": 1.0}, shuffle_buffer=3, randaugment="rand-m9-mstd0.5")
    first, again, other = (_batches(config, 1), _batches(config, 1), _batches(config, 1, seed=1))
    for a, b in zip(first, again):
        for key in ("images", "tokens", "example_index"):
            np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(first[0]["images"], other[0]["images"])


def test_batches_have_the_train_layout_and_clip_tokens(tmp_path):
    write_dataset(tmp_path / "d", "d", (6,))
    config = make_config(tmp_path, {"d": 1.0})
    batch = _batches(config, 1)[0]
    assert batch["images"].shape == (4, 64, 64, 3) and batch["images"].dtype == np.float32
    assert batch["tokens"].shape == (4, 4, 77) and batch["tokens"].dtype == np.int32
    clip = get_tokenizer(77)
    for row, index in zip(batch["tokens"], batch["example_index"]):
        caption = f"a dog number 0 {index}"  # shuffle_buffer=1: stream order = file order
        np.testing.assert_array_equal(row[0], clip([caption])[0])
        allowed = {caption} | {t.format(n) for t in CLIP_80 for n in ("dog", f"n0x{index}")}
        allowed_tokens = {tuple(t) for t in clip(sorted(allowed))}
        assert {tuple(t) for t in row[1:]} <= allowed_tokens
        # Two nouns, three slots: both nouns are used once, the last slot is the caption.
        np.testing.assert_array_equal(row[3], row[0])


@pytest.mark.parametrize("save_every, kept_state", [(2, (2, 2)), (16, (0, 12))],
                         ids=["state_before_the_chunk", "state_chunks_before"])
def test_resumed_stream_continues_exactly(tmp_path, save_every, kept_state):
    write_dataset(tmp_path / "a", "a", (5, 6, 7))
    write_dataset(tmp_path / "b", "b", (4,))
    write_captions(tmp_path, 9)  # a tfds: dataset too: three parsers, nouns found online
    config = make_config(tmp_path, {"a": 1.0, str(tmp_path / "b"): 2.0, f"tfds:{CAPTIONS}": 1.0},
                         shuffle_buffer=3)
    config.data.tfds_fields.caption = "captions/text"
    config.data.tfds_fields.caption_choice = "seeded"
    stream = ResumableBatches(config, process_index=0, process_count=1, chunk=5,
                              save_every=save_every)
    for _ in range(3):
        next(stream)
    state = json.loads(json.dumps(stream.state()))
    # 12 examples read, chunks of 5: restored from the state before chunk 2 (or 0), the
    # stream skips 2 (or 12) examples.
    assert (state["chunk"], state["skip"]) == kept_state
    expected = [next(stream) for _ in range(3)]
    resumed = ResumableBatches(config, process_index=0, process_count=1, chunk=5,
                               save_every=save_every)
    resumed.restore(state)
    for want in expected:
        got = next(resumed)
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
        np.testing.assert_array_equal(got["images"], want["images"])
    older = {k: v for k, v in state.items() if k != "reader_version"}  # as version 1 saved it
    with pytest.raises(ValueError, match="saved by version 1 of the training stream's reader"):
        ResumableBatches(config, process_index=0, process_count=1, chunk=5).restore(older)


def test_corrupt_records_and_undecodable_images_are_skipped_and_counted(tmp_path):
    # Records 3 (not an Example) and 6... (not an image) of one 10-record shard are bad.
    write_dataset(tmp_path / "d", "d", (10,), bad={(0, 4), (0, 7)})
    config = make_config(tmp_path, {"d": 1.0})
    stream = ResumableBatches(config, process_index=0, process_count=1)
    batches = [next(stream) for _ in range(4)]  # 16 good examples: two passes over the shard
    assert all(b["images"].shape == (4, 64, 64, 3) for b in batches)
    # Stream positions 0..19 (records 0..9 twice) minus 4 bad ones = 16 examples.
    assert stream.skipped == 4


def test_mixture_probabilities_scale_example_counts():
    def source(n, w):
        return mixture.Source("x", w, n, None, "train", fields.CONVERTED)
    assert mixture.probabilities([source(10, 1.0), source(30, 1.0)]) == [0.25, 0.75]
    assert mixture.probabilities([source(10, 3.0), source(30, 1.0)]) == [0.5, 0.5]


def test_mixture_weights_are_respected_over_many_draws(tmp_path):
    write_dataset(tmp_path / "a", "a", (40, 40))
    write_dataset(tmp_path / "b", "b", (120,))
    config = make_config(tmp_path, {"a": 1.5, "b": 1.0})
    ds = serialized_stream(config, 0, 1, seed=0).map(lambda e: e["source"]).batch(2000)
    from_a = int(np.sum(next(iter(ds)).numpy() == 0))
    p = 1.5 * 80 / (1.5 * 80 + 120)  # 0.5
    assert abs(from_a - 2000 * p) < 4 * math.sqrt(2000 * p * (1 - p))


def test_unresolvable_datasets_name_what_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "gcc3m" / "manifest.json")):
        mixture.resolve({"gcc3m": 1.0}, str(tmp_path))
    with pytest.raises(ValueError, match="--config.data.data_dir"):
        mixture.resolve({"gcc3m": 1.0}, "")
    with pytest.raises(FileNotFoundError, match="matched nothing"):
        mixture.resolve({str(tmp_path / "nope*"): 1.0}, "")
    write_dataset(tmp_path / "part1", "p1", (2,))
    write_dataset(tmp_path / "part2", "p2", (3,))
    found = mixture.resolve({str(tmp_path / "part*"): 2.0}, "")
    assert [(s.name, s.weight) for s in found] == [("part1", 2.0), ("part2", 2.0)]


def test_records_without_nouns_get_them_online(tmp_path):
    write_dataset(tmp_path / "d", "d", (4,), tagger=None)
    config = make_config(tmp_path, {"d": 1.0})
    batch = _batches(config, 1)[0]
    clip = get_tokenizer(77)
    # "a dog number 0 i": the tagger finds "dog" and "number" (both NN).
    for row, index in zip(batch["tokens"], batch["example_index"]):
        nouns_prompts = {t.format(n) for t in CLIP_80 for n in ("dog", "number")}
        prompt_tokens = {tuple(t) for t in clip(sorted(nouns_prompts))}
        assert tuple(row[1]) in prompt_tokens and tuple(row[2]) in prompt_tokens
        np.testing.assert_array_equal(row[3], clip([f"a dog number 0 {index}"])[0])


def _caption_config(tmp_path, choice):
    write_captions(tmp_path, 8)
    config = make_config(tmp_path, {f"tfds:{CAPTIONS}": 1.0})
    config.data.tfds_fields.caption = "captions/text"
    config.data.tfds_fields.caption_choice = choice
    return config


def test_a_prepared_tfds_dataset_trains_without_conversion(tmp_path):
    """Nested captions, the first one taken; no nouns stored: found online."""
    batch = _batches(_caption_config(tmp_path, "first"), 1)[0]
    clip = get_tokenizer(77)
    nouns_prompts = {t.format(n) for t in CLIP_80 for n in ("dog", "number")}
    prompt_tokens = {tuple(t) for t in clip(sorted(nouns_prompts))}
    for row, index in zip(batch["tokens"], batch["example_index"]):
        np.testing.assert_array_equal(row[0], clip([f"a dog number 0 {index}"])[0])
        assert tuple(row[1]) in prompt_tokens and tuple(row[2]) in prompt_tokens


def test_seeded_caption_choice_draws_each_caption_reproducibly(tmp_path):
    config = _caption_config(tmp_path, "seeded")
    clip = get_tokenizer(77)

    def drawn():
        batches = _batches(config, 4)  # 16 examples: two passes over the 8
        return [int(np.array_equal(row[0], clip([f"a red cat {i}"])[0]))
                for b in batches for row, i in zip(b["tokens"], b["example_index"] % 8)]
    first = drawn()
    assert first == drawn()
    assert 0 < sum(first) < 16  # both captions drawn


def test_tfds_fields_and_names_are_checked(tmp_path):
    write_captions(tmp_path, 2)
    fields_config = {"image": "image", "caption": "caption", "nouns": "",
                     "caption_choice": "first"}
    with pytest.raises(ValueError, match=r"tfds:tiny_captions: no feature 'caption'"):
        mixture.resolve({f"tfds:{CAPTIONS}": 1.0}, str(tmp_path), fields_config)
    with pytest.raises(FileNotFoundError, match=r"no prepared split 'validation' of "
                                                r"'tiny_captions'.*tfds build tiny_captions"):
        mixture.resolve({f"tfds:{CAPTIONS}:validation": 1.0}, str(tmp_path), fields_config)
    with pytest.raises(ValueError, match="caption_choice='random'"):
        mixture.resolve({f"tfds:{CAPTIONS}": 1.0}, str(tmp_path),
                        {**fields_config, "caption_choice": "random"})


@pytest.mark.slow
def test_trainer_resumes_the_record_stream_where_it_stopped(tmp_path, monkeypatch):
    """SIGTERM after step 3 of 6, then a rerun: the same parameters, bit for bit, as an
    uninterrupted run, which needs the same batches after the resume."""
    import os
    import signal

    import jax
    import orbax.checkpoint as ocp
    from ml_collections import ConfigDict

    from groupvit_jax.evaluation import registry
    from groupvit_jax.train import trainer

    def _stop(cfg, train_config):
        def run(model):
            os.kill(os.getpid(), signal.SIGTERM)
            return {}
        return run
    monkeypatch.setitem(registry.EVALUATORS, "sigterm_at_step_3", _stop)

    write_dataset(tmp_path / "d", "d", (7, 9, 11))
    config = make_config(tmp_path, {"d": 1.0}, shuffle_buffer=5)
    config.total_steps = 6
    config.checkpoint_every_steps = 1000
    config.keep_checkpoints = 2
    config.evals = ConfigDict({})
    straight = trainer.train_and_evaluate(config, tmp_path / "straight")
    assert straight[-1]["data/skipped_examples"] == 0

    config.evals = ConfigDict({"stop": {"kind": "sigterm_at_step_3", "every_steps": 3}})
    trainer.train_and_evaluate(config, tmp_path / "resumed")
    assert ocp.CheckpointManager(tmp_path / "resumed" / "checkpoints").latest_step() == 3
    assert (tmp_path / "resumed" / "data_state" / "3" / "process_0.json").is_file()
    config.evals = ConfigDict({})
    trainer.train_and_evaluate(config, tmp_path / "resumed")

    def final(workdir):
        mgr = ocp.CheckpointManager(workdir / "checkpoints")
        return mgr.latest_step(), mgr.restore(mgr.latest_step())["params"]
    (step_a, params_a), (step_b, params_b) = final(tmp_path / "straight"), final(
        tmp_path / "resumed")
    assert step_a == step_b == 6
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
    # One data position per checkpoint Orbax keeps.
    kept = ocp.CheckpointManager(tmp_path / "resumed" / "checkpoints").all_steps()
    assert sorted(int(p.name) for p in (tmp_path / "resumed" / "data_state").iterdir()) == kept
