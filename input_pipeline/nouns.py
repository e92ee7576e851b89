"""The words of a caption that become prompts: its nouns and verbs, as in the released code.

The released GroupViT tokenises the raw caption with `nltk.word_tokenize`, tags it with
NLTK's averaged perceptron (Penn tags) and keeps every word tagged NN, NNS, NNP, VB, VBD,
VBG, VBN, VBP or VBZ: as written (no lowercasing, lemmas or stop words), duplicates kept,
in caption order. Two taggers produce those tags:

    "pattern"  TextBlob's Pattern lexicon + rules (ships its data, works offline; default)
    "nltk"     exactly the released pipeline; needs NLTK's punkt_tab and
               averaged_perceptron_tagger_eng data, which cannot be downloaded everywhere

Both see NLTK's word tokens (Penn Treebank conventions: "man's" -> "man" "'s").
"""
from __future__ import annotations

import functools
import importlib.metadata
import re
import threading
from typing import Callable

KEPT_TAGS = frozenset({"NN", "NNS", "NNP", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})
TAGGERS = ("pattern", "nltk")
NLTK_RESOURCES = {
    "punkt_tab": "tokenizers/punkt_tab/english/",
    "averaged_perceptron_tagger_eng": "taggers/averaged_perceptron_tagger_eng/",
}

# A word with a sentence-final period glued to it ("beach." in "on the beach. Two dogs"),
# but not an initial or an acronym ("J.", "U.S.").
_WORD_THEN_PERIOD = re.compile(r"^[^.]{2,}\.$")

TagFn = Callable[[str], list[tuple[str, str]]]


def _split_sentence_periods(tokens: list[str]) -> list[str]:
    """nltk.word_tokenize splits sentences with punkt before tokenising each one, so a
    period ending a sentence inside a caption becomes its own token. Without punkt's data
    we split such periods by rule; punkt also keeps some titles whole ("Mr.") where we
    split them ("Mr" "."), which tags the word the same way."""
    out = []
    for token in tokens:
        if _WORD_THEN_PERIOD.match(token):
            out.extend((token[:-1], "."))
        else:
            out.append(token)
    return out


def _pattern_tagger() -> TagFn:
    from nltk.tokenize import NLTKWordTokenizer
    from textblob.en import parser

    tokenizer = NLTKWordTokenizer()

    def tag(caption: str) -> list[tuple[str, str]]:
        tokens = _split_sentence_periods(tokenizer.tokenize(caption))
        # find_tags takes the token list itself: the string API would re-tokenise and
        # split "'s" into "'" and "s".
        return [(word, tag) for word, tag in parser.find_tags(tokens)]

    return tag


def _nltk_tagger() -> TagFn:
    import nltk
    from nltk.tag.perceptron import PerceptronTagger

    missing = []
    for name, path in NLTK_RESOURCES.items():
        try:
            nltk.data.find(path)
        except LookupError:
            missing.append(name)
    if missing:
        raise LookupError(
            f"tagger 'nltk' needs the NLTK data {missing}, not found in {nltk.data.path}; "
            f"install it with `python -m nltk.downloader {' '.join(missing)}`, or use "
            "tagger 'pattern', which works offline.")
    # nltk.pos_tag would load the perceptron's weights again on every call.
    perceptron = PerceptronTagger()
    return lambda caption: perceptron.tag(nltk.word_tokenize(caption))


@functools.lru_cache(maxsize=None)
def get_tagger(tagger: str) -> TagFn:
    """caption -> [(word, Penn tag)], built once per process."""
    if tagger == "pattern":
        return _pattern_tagger()
    if tagger == "nltk":
        return _nltk_tagger()
    raise ValueError(f"unknown tagger {tagger!r}; expected one of {TAGGERS}")


_TAGGER_LOCK = threading.Lock()  # the taggers keep per-call state: one caption at a time


def extract_nouns(caption: str, tagger: str = "pattern") -> list[str]:
    """The caption's words tagged as nouns or verbs (KEPT_TAGS), in order, as written.
    Thread-safe (tf.data calls it from several threads)."""
    tag = get_tagger(tagger)
    with _TAGGER_LOCK:
        tagged = tag(caption)
    return [word for word, t in tagged if t in KEPT_TAGS]


def tagger_info(tagger: str) -> dict:
    """What the manifest records about the nouns: the tagger and the packages behind it."""
    if tagger not in TAGGERS:
        raise ValueError(f"unknown tagger {tagger!r}; expected one of {TAGGERS}")
    packages = ("textblob", "nltk") if tagger == "pattern" else ("nltk",)
    version = ",".join(f"{p}=={importlib.metadata.version(p)}" for p in packages)
    return {"tagger": tagger, "version": version}
