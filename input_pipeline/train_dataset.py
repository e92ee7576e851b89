"""The training stream: per-host batches of augmented images and tokenised prompts.

    ds = create_train_dataset(config)  # {"images": f32 [b, S, S, 3], "tokens": i32 [b, 1+K, L],
                                       #  "example_index": i64 [b]}, b = global_batch / hosts

Per host: its share of every dataset's shards (by file; by example for a dataset with
fewer shards than hosts), files in a new seeded order each epoch, examples shuffled in
blocks of `data.shuffle_buffer` (a seeded permutation of each block), the datasets mixed
by `input_pipeline.mixture`, then decode + augment, prompts and tokens. Every random
choice is a stateless function of (seed, host, position), so the stream is a pure
function of the config. Its undecoded part (`serialized_stream`) checkpoints as a few
cursors (tf.data symbolic checkpointing), not as a shuffle buffer; `input_pipeline.
resumable` builds the exactly resumable stream the trainer uses from that.

Records that fail to parse or decode are skipped, not fatal. `example_index` numbers the
examples of this host's stream before skipping, so the gaps count what was skipped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from input_pipeline import augment, mixture, nouns, prompts, records
from input_pipeline import tokenize_ops
from input_pipeline.shards import ShardReading

FILE_CYCLE = 8  # files read in parallel per dataset: mixes neighbouring shards
ONLINE_TAGGER = "pattern"  # for datasets stored without nouns; needs no downloaded data


def _seed(*parts) -> tf.Tensor:
    """An int64 [2] stateless seed from integers / int64 scalar tensors."""
    seed = tf.constant([0, 0], tf.int64)
    for part in parts:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
    return seed


def _permutation(seed: tf.Tensor, n) -> tf.Tensor:
    return tf.argsort(tf.random.stateless_uniform([n], seed=seed))


def _serialized(source: mixture.Source, source_index: int, process_index: int,
                process_count: int, seed: int, block: int,
                shards: ShardReading) -> tf.data.Dataset:
    """This host's endless, shuffled stream of one dataset's serialised records."""
    files = source.files
    by_example = len(files) < process_count
    if by_example:
        logging.warning("dataset %s has %d shards for %d hosts: sharding by example (every "
                        "host reads every shard); convert it into >= %d shards to read less.",
                        source.name, len(files), process_count, process_count)
        host_examples = source.manifest["num_examples"] // process_count
    else:
        counts = [shard["num_examples"] for shard in source.manifest["shards"]]
        files = files[process_index::process_count]
        host_examples = sum(counts[process_index::process_count])
    if block > host_examples:
        # A block must fill from one pass over the data, or a small dataset waits for many.
        logging.info("dataset %s: shuffling blocks of %d, this host's examples, not "
                     "data.shuffle_buffer=%d.", source.name, host_examples, block)
        block = max(host_examples, 1)
    num_files, files = len(files), tf.constant(files)

    def epoch_files(epoch):
        # The same order on every host, so example sharding stays disjoint.
        order = _permutation(_seed(seed, source_index, epoch), tf.size(files))
        return tf.data.Dataset.from_tensor_slices(tf.gather(files, order))

    def records(path):
        return tf.data.TFRecordDataset(path).take(shards.records_to_read(path))

    ds = tf.data.Dataset.range(2**62).flat_map(epoch_files)
    # Sequential: a parallel interleave under choose_from_datasets hangs after a symbolic
    # restore (TF 2.21). Reading records is cheap next to decoding them.
    ds = ds.interleave(records, cycle_length=min(FILE_CYCLE, num_files))
    if by_example:
        ds = ds.shard(process_count, process_index)

    def shuffle_block(index, examples):
        order = _permutation(_seed(seed, source_index, process_index, index), block)
        return tf.gather(examples, order)

    # A seeded permutation per block of `block` examples instead of a shuffle buffer:
    # the same mixing, and its state is a cursor, so checkpoints stay small.
    ds = ds.batch(block, drop_remainder=True).enumerate().map(shuffle_block).prefetch(1)
    return ds.unbatch().map(lambda x: (tf.constant(source_index), x))


def _mixed(streams: list[tf.data.Dataset], probabilities: list[float], process_index: int,
           seed: int) -> tf.data.Dataset:
    if len(streams) == 1:
        return streams[0]
    logits = tf.math.log(tf.constant([probabilities], tf.float32))

    def pick(position):
        draw = tf.random.stateless_categorical(logits, 1, _seed(seed, -1, process_index, position))
        return tf.cast(draw[0, 0], tf.int64)

    choice = tf.data.Dataset.range(2**62).map(pick)
    return tf.data.Dataset.choose_from_datasets(streams, choice)


@tf.autograph.experimental.do_not_convert  # runs in Python on numpy, never traced
def _extract_nouns(text: np.ndarray) -> np.ndarray:
    found = nouns.extract_nouns(np.asarray(text).item().decode("utf-8"), ONLINE_TAGGER)
    return np.array([w.encode("utf-8") for w in found], dtype=object)


def _online_nouns(caption: tf.Tensor) -> tf.Tensor:
    words = tf.numpy_function(_extract_nouns, [caption], tf.string, stateful=False)
    return tf.ensure_shape(words, [None])


def _check(config, process_count: int) -> None:
    data = config.data
    if data.global_batch % process_count:
        raise ValueError(f"data.global_batch={data.global_batch} is not divisible by "
                         f"{process_count} hosts.")
    if data.augment.image_size != config.model.vision.image_size:
        raise ValueError(f"data.augment.image_size={data.augment.image_size} but "
                         f"model.vision.image_size={config.model.vision.image_size}: set both "
                         "alike.")
    if data.shuffle_buffer < 1:
        raise ValueError(f"data.shuffle_buffer={data.shuffle_buffer}: must be >= 1.")
    if data.max_skipped_in_a_row < 0 or not 0 <= data.max_skipped_fraction <= 1:
        raise ValueError(f"data.max_skipped_in_a_row={data.max_skipped_in_a_row} must be >= 0 "
                         f"and data.max_skipped_fraction={data.max_skipped_fraction} in [0, 1].")


def serialized_stream(config, process_index: int, process_count: int, seed: int,
                      shards: ShardReading | None = None) -> tf.data.Dataset:
    """{"example_index": i64, "source": i32, "record": serialised example}: this host's
    shuffled, mixed, endless stream before any decoding. It holds only cursors, so its
    position can be saved cheaply (tf.data symbolic checkpointing). `shards` says how
    much of each shard to read (default: a new ShardReading of the config's datasets)."""
    sources = mixture.resolve(config.data.datasets, config.data.data_dir)
    shards = shards or ShardReading(sources)
    streams = [_serialized(s, i, process_index, process_count, seed, config.data.shuffle_buffer,
                           shards)
               for i, s in enumerate(sources)]
    ds = _mixed(streams, mixture.probabilities(sources), process_index, seed)
    ds = ds.enumerate().map(lambda i, x: {"example_index": i, "source": x[0], "record": x[1]})
    return ds.with_options(_options(config, symbolic_checkpoint=True))


def _options(config, symbolic_checkpoint: bool = False) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = config.data.num_threads
    options.threading.max_intra_op_parallelism = 1
    if symbolic_checkpoint:  # left unset otherwise: tf.data warns when a pipeline turns it off
        options.experimental_symbolic_checkpoint = True
    return options


def prepared_batches(examples: tf.data.Dataset, config, process_index: int,
                     process_count: int, seed: int,
                     watch: Callable[[np.ndarray], np.ndarray] | None = None) -> tf.data.Dataset:
    """serialized_stream's elements -> batches of images and tokens (module docstring).
    `watch` sees each batch's example_index as it is formed (and returns it)."""
    data = config.data
    text = config.model.text
    _check(config, process_count)
    tokenizer = tokenize_ops.make_tokenizer(data.tokenizer, text.context_length)
    tokenize_ops.check_vocab_size(tokenizer, text.vocab_size, data.tokenizer)
    sources = mixture.resolve(data.datasets, data.data_dir)
    without_nouns = [s.manifest["nouns"].get("tagger") is None for s in sources]
    stored_without_nouns = tf.constant(without_nouns)
    image_options = data.augment.to_dict()

    def prepare(element):
        example = records.parse_example(element["record"])
        words = example["nouns"]
        if any(without_nouns):  # else the tagger stays out of the graph
            words = tf.cond(stored_without_nouns[element["source"]],
                            lambda: _online_nouns(example["caption"]), lambda: words)
        example_seed = _seed(seed, process_index, element["example_index"])
        image_seed, prompt_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed))
        return {"images": augment.train_image(example["image"], image_seed, **image_options),
                "texts": prompts.make_prompts(example["caption"], words, prompt_seed,
                                              data.num_prompts),
                "example_index": element["example_index"]}

    def tokenize_batch(batch):
        batch["tokens"] = tokenizer(batch.pop("texts"))
        return batch

    ds = examples.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    # Corrupt records and undecodable images raise inside `prepare`: drop those examples.
    # Not logged one by one: a run of bad data would flood the log; the trainer logs counts.
    ds = ds.ignore_errors()
    ds = ds.batch(data.global_batch // process_count, drop_remainder=True)
    if watch is not None:
        ds = ds.map(lambda batch: {**batch, "example_index": tf.ensure_shape(tf.numpy_function(
            watch, [batch["example_index"]], tf.int64, stateful=True),
            batch["example_index"].shape)})
    ds = ds.map(tokenize_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(data.prefetch).with_options(_options(config))


def resolve_process(config, process_index: int | None, process_count: int | None,
                    seed: int | None) -> tuple[int, int, int]:
    """Defaults: JAX's process index and count, config.seed."""
    import jax

    return (jax.process_index() if process_index is None else process_index,
            jax.process_count() if process_count is None else process_count,
            config.seed if seed is None else seed)


def create_train_dataset(config, *, process_index: int | None = None,
                         process_count: int | None = None,
                         seed: int | None = None) -> tf.data.Dataset:
    """This host's endless stream of training batches (see the module docstring).

    The dataset itself cannot be checkpointed (skipping errors is not); for a stream
    that resumes exactly, use input_pipeline.resumable.ResumableBatches.
    """
    process = resolve_process(config, process_index, process_count, seed)
    return prepared_batches(serialized_stream(config, *process), config, *process)
