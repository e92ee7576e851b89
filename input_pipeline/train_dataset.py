"""The training stream: per-host batches of augmented images and tokenised prompts.

    ds = create_train_dataset(config)  # {"images": f32 [b, S, S, 3], "tokens": i32 [b, 1+K, L],
                                       #  "example_index": i64 [b]}, b = global_batch / hosts

Per host: its even share of every dataset (tfds.split_for_jax_process; converted folders
and `tfds:` datasets alike are TFDS datasets), files in a new seeded order each epoch,
examples shuffled in blocks of `data.shuffle_buffer` (a seeded permutation of each
block), the datasets mixed by `input_pipeline.mixture`, then parse (the dataset's TFDS
features, input_pipeline.fields) + decode + augment, prompts and tokens. Every random
choice is a stateless function of (seed, host, position), so the stream is a pure
function of the config. Its undecoded part (`serialized_chunks`, `serialized_stream`)
checkpoints as a few cursors (tf.data symbolic checkpointing), not as a shuffle buffer;
`input_pipeline.resumable` builds the exactly resumable stream the trainer uses from that.
It calls no Python and no tf.data function per record: under symbolic checkpointing
each such call costs about 40 us, a third of reading a 127 KB record. It reads the raw
records of the file instructions TFDS gives for the host's share, not
`builder.as_dataset`, which parses as it reads: parsing comes after the checkpointed
part, where a corrupt record can be skipped.

Records that fail to parse or decode are skipped, not fatal. `example_index` numbers the
examples of this host's stream before skipping, so the gaps count what was skipped.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from input_pipeline import augment, fields, mixture, nouns, prompts
from input_pipeline import tokenize_ops
from input_pipeline.shards import ShardReading

FILE_CYCLE = 8  # files read at a time per dataset: mixes neighbouring shards
FILE_READ_AHEAD = 64  # records each open file reads ahead, in a thread of its own
MIX_DRAWS = 1024  # a mixture's dataset choices drawn per call
STREAM_CHUNK = 256  # examples per chunk of serialized_stream
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
    """This host's endless, shuffled stream of one dataset's serialised records: its even
    share of the split (tfds.split_for_jax_process), read by the file instructions TFDS
    gives for that share, as much of each file as `shards` says is readable."""
    import tensorflow_datasets as tfds

    share = tfds.split_for_jax_process(source.split, process_index=process_index,
                                       process_count=process_count)
    instructions = source.builder.info.splits[share].file_instructions
    if not instructions:
        raise ValueError(f"dataset {source.name} has {source.num_examples} examples, fewer "
                         f"than the {process_count} hosts reading it.")
    host_examples = sum(i.take for i in instructions)
    if block > host_examples:
        # A block must fill from one pass over the data, or a small dataset waits for many.
        logging.info("dataset %s: shuffling blocks of %d, this host's examples, not "
                     "data.shuffle_buffer=%d.", source.name, host_examples, block)
        block = host_examples
    files = tf.constant([str(i.filename) for i in instructions])
    skips = tf.constant([i.skip for i in instructions], tf.int64)
    takes = tf.constant([i.take for i in instructions], tf.int64)

    def epoch_files(epoch):
        order = _permutation(_seed(seed, source_index, process_index, epoch), tf.size(files))
        return tf.data.Dataset.from_tensor_slices(
            (tf.gather(files, order), tf.gather(skips, order), tf.gather(takes, order)))

    def records_of(file, skip, take):
        readable = tf.data.TFRecordDataset(file).take(shards.records_to_read(file))
        # The open files read ahead in parallel, each in its own thread, while the
        # interleave below takes their records in its sequential order.
        return readable.skip(skip).take(take).prefetch(FILE_READ_AHEAD)

    ds = tf.data.Dataset.range(2**62).flat_map(epoch_files)
    # A sequential interleave over files that read ahead, not a parallel interleave:
    # TF 2.21's parallel interleave restores the files it had opened ahead of its cycle
    # with no thread to read them, and a restored stream hangs when it reaches one
    # (tests/test_reader_restore.py).
    ds = ds.interleave(records_of, cycle_length=min(FILE_CYCLE, len(instructions)))

    def shuffle_block(index, examples):
        order = _permutation(_seed(seed, source_index, process_index, index), block)
        return tf.fill([block], tf.constant(source_index)), tf.gather(examples, order)

    # A seeded permutation per block of `block` examples instead of a shuffle buffer:
    # the same mixing, and its state is a cursor, so checkpoints stay small.
    ds = ds.batch(block, drop_remainder=True).enumerate().map(shuffle_block).prefetch(1)
    return ds.unbatch()


def _mixed(streams: list[tf.data.Dataset], probabilities: list[float], process_index: int,
           seed: int) -> tf.data.Dataset:
    if len(streams) == 1:
        return streams[0]
    logits = tf.math.log(tf.constant([probabilities], tf.float32))

    def draws(group):  # the choices for positions group * MIX_DRAWS, ...
        return tf.random.stateless_categorical(logits, MIX_DRAWS,
                                               _seed(seed, -1, process_index, group))[0]

    choice = tf.data.Dataset.range(2**62).map(draws).unbatch()
    return tf.data.Dataset.choose_from_datasets(streams, choice)


@tf.autograph.experimental.do_not_convert  # runs in Python on numpy, never traced
def _extract_nouns(text: np.ndarray) -> np.ndarray:
    found = nouns.extract_nouns(np.asarray(text).item().decode("utf-8"), ONLINE_TAGGER)
    return np.array([w.encode("utf-8") for w in found], dtype=object)


def _online_nouns(caption: tf.Tensor) -> tf.Tensor:
    words = tf.numpy_function(_extract_nouns, [caption], tf.string, stateful=False)
    return tf.ensure_shape(words, [None])


def sources(config) -> list[mixture.Source]:
    data = config.data
    return mixture.resolve(data.datasets, data.data_dir, data.tfds_fields)


def _reader(source: mixture.Source):
    """(record, seed) -> {"image", "caption", "nouns"} of one source; nouns extracted
    online when the source holds none (the tagger stays out of the graph otherwise)."""
    parse = fields.parser(source.builder.info.features, source.fields, source.name)

    def read(record, seed):
        example = parse(record, seed)
        if "nouns" not in example:
            example["nouns"] = _online_nouns(example["caption"])
        return example
    return read


def _read_example(readers, record, source, seed) -> dict[str, tf.Tensor]:
    if len(readers) == 1:
        return readers[0](record, seed)
    return tf.switch_case(tf.cast(source, tf.int32),
                          [functools.partial(read, record, seed) for read in readers])


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


def serialized_chunks(config, process_index: int, process_count: int, seed: int,
                      chunk: int, shards: ShardReading | None = None) -> tf.data.Dataset:
    """This host's shuffled, mixed, endless stream before any decoding, in chunks of
    `chunk` consecutive examples: {"example_index": i64 [chunk], "source": i32 [chunk],
    "record": serialised examples [chunk]}. It holds only cursors, so its position can be
    saved cheaply (tf.data symbolic checkpointing). `shards` (of the config's datasets)
    says how much of each shard to read; default: a new ShardReading."""
    shards = shards or ShardReading(sources(config))
    datasets = shards.sources
    streams = [_serialized(s, i, process_index, process_count, seed, config.data.shuffle_buffer,
                           shards)
               for i, s in enumerate(datasets)]
    ds = _mixed(streams, mixture.probabilities(datasets), process_index, seed)

    def as_chunk(index, examples):
        source, record = examples
        return {"example_index": index * chunk + tf.range(chunk, dtype=tf.int64),
                "source": source, "record": record}

    ds = ds.batch(chunk, drop_remainder=True).enumerate().map(as_chunk)
    return ds.with_options(_options(config, symbolic_checkpoint=True))


def serialized_stream(config, process_index: int, process_count: int, seed: int,
                      shards: ShardReading | None = None) -> tf.data.Dataset:
    """serialized_chunks' examples one by one: {"example_index": i64, "source": i32,
    "record": serialised example}."""
    return serialized_chunks(config, process_index, process_count, seed, STREAM_CHUNK,
                             shards).unbatch()


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
                     watch: Callable[[np.ndarray], np.ndarray] | None = None,
                     datasets: list[mixture.Source] | None = None) -> tf.data.Dataset:
    """serialized_stream's examples -> batches of images and tokens (module docstring).
    `watch` sees each batch's example_index as it is formed (and returns it); `datasets`:
    the config's, already resolved (default: resolved here)."""
    data = config.data
    text = config.model.text
    _check(config, process_count)
    tokenizer = tokenize_ops.make_tokenizer(data.tokenizer, text.context_length)
    tokenize_ops.check_vocab_size(tokenizer, text.vocab_size, data.tokenizer)
    readers = [_reader(source) for source in datasets or sources(config)]
    image_options = data.augment.to_dict()

    def prepare(element):
        example_seed = _seed(seed, process_index, element["example_index"])
        image_seed, prompt_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed))
        caption_seed = tf.random.experimental.stateless_fold_in(example_seed, 1)
        example = _read_example(readers, element["record"], element["source"], caption_seed)
        return {"images": augment.train_image(example["image"], image_seed, **image_options),
                "texts": prompts.make_prompts(example["caption"], example["nouns"], prompt_seed,
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
