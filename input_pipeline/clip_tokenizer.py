"""CLIP byte-pair-encoding tokenizer for the GroupViT text tower.

Captions become int32 arrays ``[SOT] ids [EOT] 0 ...`` whose ids are identical
to OpenAI CLIP's ``SimpleTokenizer`` + ``clip.tokenize``: same text cleaning,
split pattern, byte-to-unicode mapping, BPE merges (the vocabulary file ships in
``assets/``) and truncation rule. Cleaning runs in Python; splitting and BPE run
in HuggingFace ``tokenizers``.
"""

from __future__ import annotations

import functools
import gzip
import html
from collections.abc import Sequence
from pathlib import Path

import ftfy
import numpy as np
import regex
from tokenizers import Regex, Tokenizer, models, pre_tokenizers

VOCAB_PATH = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
NUM_MERGES = 49152 - 256 - 2  # merge lines used by CLIP, after the header line
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")

# CLIP's split pattern, evaluated with the `regex` module exactly as CLIP does.
_SPLIT = regex.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE,
)
_SPACES = regex.compile(r"\s+")


def clean(text: str) -> str:
    """CLIP's normalisation: ftfy, html-unescape twice, collapse whitespace, lowercase."""
    if text.isascii() and text.isprintable() and "&" not in text:
        # Shortcut for most captions (ftfy costs 50-150 us): ftfy and html.unescape
        # leave printable ASCII without '&' unchanged, and its only whitespace is ' '.
        return " ".join(text.split()).lower()
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _SPACES.sub(" ", text).strip().lower()


def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible byte -> printable-char table, in CLIP's vocabulary order."""
    kept = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    moved = [b for b in range(256) if b not in kept]
    return {b: chr(b) for b in kept} | {b: chr(0x100 + i) for i, b in enumerate(moved)}


def load_bpe(path: Path = VOCAB_PATH) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(token -> id, merges in priority order), laid out as CLIP builds them."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    chars = list(byte_to_char().values())
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [SOT, EOT]
    return {t: i for i, t in enumerate(tokens)}, merges


@functools.lru_cache(maxsize=1)
def _onig_split_pattern() -> str:
    """CLIP's split pattern with every class spelled out as explicit code-point ranges.

    Oniguruma (inside `tokenizers`) and the `regex` module disagree on thousands of
    code points: different Unicode versions, and IGNORECASE quirks ("'ſ" is a
    contraction; U+0345 matches no class and is dropped). Asking `regex` itself
    which code points each class matches makes the Rust-side split agree with
    CLIP's by construction.
    """
    # All code points as two strings, split at the surrogates so no run spans them.
    planes = [np.arange(a, b, dtype="<u4").tobytes().decode("utf-32-le")
              for a, b in ((0, 0xD800), (0xE000, 0x110000))]

    def runs(pattern: str) -> list[tuple[str, str]]:
        found = (m.group() for s in planes
                 for m in regex.finditer(f"(?:{pattern})+", s, regex.IGNORECASE))
        return [(r[0], r[-1]) for r in found]

    def onig_class(pairs) -> str:
        return "[" + "".join(f"\\x{{{ord(a):X}}}-\\x{{{ord(b):X}}}" for a, b in pairs) + "]"

    words = (SOT, EOT, *_CONTRACTIONS)
    letters = sorted(set("".join(words)))
    # Case variants of the literal characters (e.g. 'S', 'ſ' for 's'): few, so one scan.
    cands = [chr(c) for a, b in runs("|".join(map(regex.escape, letters)))
             for c in range(ord(a), ord(b) + 1)]
    same = lambda ch, c: regex.fullmatch(regex.escape(ch), c, regex.IGNORECASE)  # noqa: E731
    variants = {ch: onig_class((c, c) for c in cands if same(ch, c)) for ch in letters}
    alternatives = ["".join(variants[ch] for ch in w) for w in words]
    alternatives += [onig_class(runs(r"[\p{L}]")) + "+", onig_class(runs(r"[\p{N}]")),
                     onig_class(runs(r"[^\s\p{L}\p{N}]")) + "+"]
    return "|".join(alternatives)


class ClipTokenizer:
    """Callable CLIP tokenizer: ``tok(["a cat", ...]) -> int32 [N, context_length]``."""

    vocab_size: int = 49408

    def __init__(self, context_length: int = 77):
        self.context_length = context_length
        vocab, merges = load_bpe()
        if len(vocab) != self.vocab_size:
            raise ValueError(f"{VOCAB_PATH} gives {len(vocab)} tokens, expected {self.vocab_size}")
        self.sot_id, self.eot_id = vocab[SOT], vocab[EOT]
        self._special = {SOT: self.sot_id, EOT: self.eot_id}
        bpe = models.BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="</w>")
        self._hf = Tokenizer(bpe)
        # Text is cleaned in Python first, so no normalizer. The split keeps the
        # matches and drops the gaps (whitespace), like re.findall.
        self._hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_onig_split_pattern()), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])

    def _bpe(self, cleaned: list[str]) -> list[list[int]]:
        return [e.ids for e in self._hf.encode_batch_fast(cleaned, add_special_tokens=False)]

    def _bpe_with_specials(self, cleaned: str) -> list[int]:
        # CLIP maps a literal SOT/EOT string to its id only where its split regex
        # yields it as one piece (not e.g. after '!', which starts a '!<|' run), so
        # find those pieces with the same regex and BPE the text between them.
        ids, start = [], 0
        for m in _SPLIT.finditer(cleaned):
            if m.group() in self._special:
                ids += self._bpe([cleaned[start : m.start()]])[0] + [self._special[m.group()]]
                start = m.end()
        return ids + self._bpe([cleaned[start:]])[0]

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        cleaned = [clean(t) for t in texts]
        out = self._bpe(cleaned)
        for i, t in enumerate(cleaned):
            if "<|" in t:  # every special-token match starts with '<|'
                out[i] = self._bpe_with_specials(t)
        return out

    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without SOT/EOT."""
        return self._encode_many([text])[0]

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = True
    ) -> np.ndarray:
        length = self.context_length if context_length is None else context_length
        if length < 1:
            raise ValueError(f"context_length must be >= 1, got {length}")
        if isinstance(texts, str):
            texts = [texts]
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
        out = np.zeros((len(texts), length), np.int32)
        for i, ids in enumerate(self._encode_many(texts)):
            ids = [self.sot_id, *ids, self.eot_id]
            if len(ids) > length:
                if not truncate:
                    raise ValueError(f"text {texts[i]!r} is {len(ids)} tokens long (with SOT/EOT), "
                                     f"more than context_length={length}")
                ids = ids[:length]
                ids[-1] = self.eot_id  # CLIP keeps EOT so the text tower's EOT pooling still works
            out[i, : len(ids)] = ids
        return out


@functools.lru_cache(maxsize=None)
def get_tokenizer(context_length: int = 77) -> ClipTokenizer:
    """Shared tokenizer instance per context length (building one takes ~0.5 s)."""
    return ClipTokenizer(context_length)
