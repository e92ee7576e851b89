"""Text -> int32 token ids [..., context_length] inside a tf.data pipeline.

Two tokenizers, chosen by `config.data.tokenizer`:
  "clip"                      CLIP's BPE (input_pipeline.clip_tokenizer, ids identical to OpenAI's),
                              run once per batch through tf.numpy_function: its Rust BPE
                              handles thousands of strings per call, so the Python hop is paid
                              per batch, not per caption.
  "sentencepiece:/path.model" a SentencePiece model run in-graph by tensorflow_text. Its
                              ids are laid out as CLIP's are, so the text tower needs no
                              change: pad 0, piece p -> p + 1, SOT = V + 1 and EOT = V + 2
                              (the tower pools at the largest id, which must be EOT).
Both write [SOT] ids [EOT] 0 ..., truncated to the context with EOT kept last.
"""
from __future__ import annotations

import tensorflow as tf

from input_pipeline.clip_tokenizer import get_tokenizer

SENTENCEPIECE_PREFIX = "sentencepiece:"


class ClipBatchTokenizer:
    """CLIP BPE over a whole string tensor at once."""

    def __init__(self, context_length: int):
        self.context_length = context_length
        self.vocab_size = get_tokenizer(context_length).vocab_size

    def _numpy(self, texts):
        flat = [t.decode("utf-8") for t in texts.reshape(-1)]
        tokens = get_tokenizer(self.context_length)(flat)
        return tokens.reshape(*texts.shape, self.context_length)

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        tokens = tf.numpy_function(self._numpy, [texts], tf.int32, stateful=False)
        return tf.ensure_shape(tokens, [*texts.shape, self.context_length])


class SentencePieceTokenizer:
    """A SentencePiece model in-graph, with ids shifted so that EOT is the largest."""

    def __init__(self, model_path: str, context_length: int):
        import sentencepiece
        import tensorflow_text

        if context_length < 2:
            raise ValueError(f"context_length={context_length} leaves no room for SOT and EOT")
        try:
            model = tf.io.gfile.GFile(model_path, "rb").read()
        except tf.errors.NotFoundError as e:
            raise FileNotFoundError(f"SentencePiece model {model_path} not found") from e
        pieces = sentencepiece.SentencePieceProcessor(model_proto=model).get_piece_size()
        self.context_length = context_length
        self.sot_id, self.eot_id = pieces + 1, pieces + 2
        self.vocab_size = pieces + 3
        self._sp = tensorflow_text.SentencepieceTokenizer(model=model, out_type=tf.int32)

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(texts, [-1])
        ids = self._sp.tokenize(flat)[:, : self.context_length - 2] + 1
        n = tf.shape(flat)[0]
        sot = tf.fill([n, 1], self.sot_id)
        eot = tf.fill([n, 1], self.eot_id)
        full = tf.concat([sot, ids, eot], axis=1).to_tensor(0, shape=[None, self.context_length])
        return tf.reshape(full, tf.concat([tf.shape(texts), [self.context_length]], 0))


def make_tokenizer(spec: str, context_length: int):
    """"clip" or "sentencepiece:/path/to.model" -> a callable string tensor -> int32 ids."""
    if spec == "clip":
        return ClipBatchTokenizer(context_length)
    if spec.startswith(SENTENCEPIECE_PREFIX) and len(spec) > len(SENTENCEPIECE_PREFIX):
        return SentencePieceTokenizer(spec[len(SENTENCEPIECE_PREFIX):], context_length)
    raise ValueError(f"data.tokenizer={spec!r}: expected 'clip' or "
                     f"'{SENTENCEPIECE_PREFIX}/path/to/model'.")


def check_vocab_size(tokenizer, model_vocab_size: int, spec: str) -> None:
    """The text tower's embedding table must have exactly one row per id."""
    if tokenizer.vocab_size != model_vocab_size:
        raise ValueError(f"data.tokenizer={spec!r} gives {tokenizer.vocab_size} ids but "
                         f"model.text.vocab_size={model_vocab_size}; set "
                         f"--config.model.text.vocab_size={tokenizer.vocab_size}.")
