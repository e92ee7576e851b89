"""Trains a SentencePiece model on the captions of a converted dataset.

    python -m input_pipeline.train_sentencepiece --data=DATASET_DIR --vocab_size=32000 \
        --out=/models/captions_32k

writes PREFIX.model and PREFIX.vocab. Train with
`--config.data.tokenizer=sentencepiece:PREFIX.model` and
`--config.model.text.vocab_size=` the size it prints (pieces + pad, SOT and EOT).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from absl import flags

from input_pipeline import cli, records


def captions(dataset_dir: str, limit: int) -> Iterator[str]:
    """Up to `limit` captions, shard by shard in manifest order."""
    import tensorflow as tf

    manifest = records.read_manifest(dataset_dir)
    files = [s["path"] for s in manifest["shards"]]
    parsed = tf.data.TFRecordDataset(files).map(records.parse_example).take(limit)
    for example in parsed.as_numpy_iterator():
        yield example["caption"].decode("utf-8")


def train(dataset_dir: str, vocab_size: int, out_prefix: str, max_sentences: int) -> int:
    """Trains and returns the text tower's vocab size for the model (pieces + 3)."""
    import sentencepiece

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=captions(dataset_dir, max_sentences), model_prefix=out_prefix,
        vocab_size=vocab_size, model_type="unigram", character_coverage=0.9995,
        # Only <unk> is reserved: padding, SOT and EOT are added by the tokenizer above
        # the pieces (input_pipeline.tokenize_ops), so EOT stays the largest id.
        unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        input_sentence_size=max_sentences, shuffle_input_sentence=True,
        minloglevel=2)
    return vocab_size + 3


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data", None, "a converted dataset folder", flag_values=fv,
                        required=True)
    flags.DEFINE_integer("vocab_size", None, "number of pieces", lower_bound=1, flag_values=fv,
                         required=True)
    flags.DEFINE_string("out", None, "output prefix: PREFIX.model/.vocab", flag_values=fv,
                        required=True)
    flags.DEFINE_integer("max_sentences", 2_000_000,
                         "captions read for training (from the first shards)", lower_bound=1,
                         flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    records.read_manifest(args.data)  # a missing or broken dataset: one line, before TensorFlow
    model_vocab = train(args.data, args.vocab_size, args.out, args.max_sentences)
    logging.warning("wrote %s.model; train with --config.data.tokenizer=sentencepiece:%s.model "
                    "--config.model.text.vocab_size=%d", args.out, args.out, model_vocab)
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
