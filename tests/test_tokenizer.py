"""The CLIP tokenizer gives OpenAI CLIP's ids.

Checked against (1) an independent plain-Python implementation of OpenAI's
SimpleTokenizer + clip.tokenize written below, (2) transformers' CLIPTokenizer
built offline from the same vocabulary, and (3) ids looked up by hand.
"""

import gzip
import html
import json
import random
import unicodedata

import ftfy
import numpy as np
import pytest
import regex

from input_pipeline.clip_tokenizer import VOCAB_PATH, ClipTokenizer, clean, get_tokenizer

L = 77
SOT_S, EOT_S = "<|startoftext|>", "<|endoftext|>"


# ---------------------------------------------------------------- reference --
class Reference:
    """OpenAI CLIP's tokenisation spelled out step by step, no shared code."""

    split = regex.compile(
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        regex.IGNORECASE,
    )

    def __init__(self):
        # GPT-2 byte table: printable Latin-1 bytes stand for themselves, every other
        # byte gets the next free code point from 256 upwards, in byte order.
        printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
        self.byte_char, nxt = {}, 256
        for b in range(256):
            if b in printable:
                self.byte_char[b] = chr(b)
            else:
                self.byte_char[b] = chr(nxt)
                nxt += 1
        order = printable + [b for b in range(256) if b not in printable]
        singles = [self.byte_char[b] for b in order]
        raw = gzip.decompress(VOCAB_PATH.read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in raw[1 : 49152 - 256 - 2 + 1]]
        self.rank = {pair: r for r, pair in enumerate(merges)}
        tokens = singles + [s + "</w>" for s in singles]
        tokens += ["".join(p) for p in merges] + [SOT_S, EOT_S]
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.memo = {SOT_S: [SOT_S], EOT_S: [EOT_S]}

    @staticmethod
    def clean(text):
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        text = regex.sub(r"\s+", " ", text).strip()
        return text.lower()

    def bpe(self, word):
        if word not in self.memo:
            parts = [*word[:-1], word[-1] + "</w>"]
            while len(parts) > 1:
                pairs = list(zip(parts, parts[1:]))
                best = min(pairs, key=lambda p: self.rank.get(p, len(self.rank)))
                if best not in self.rank:
                    break
                joined, i = [], 0
                while i < len(parts):
                    if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                        joined.append(parts[i] + parts[i + 1])
                        i += 2
                    else:
                        joined.append(parts[i])
                        i += 1
                parts = joined
            self.memo[word] = parts
        return self.memo[word]

    def encode(self, text):
        out = []
        for piece in self.split.findall(self.clean(text)):
            word = "".join(self.byte_char[b] for b in piece.encode("utf-8"))
            out += [self.ids[t] for t in self.bpe(word)]
        return out

    def tokenize(self, texts, length=L):
        rows = np.zeros((len(texts), length), np.int64)
        for r, text in enumerate(texts):
            seq = [self.ids[SOT_S]] + self.encode(text) + [self.ids[EOT_S]]
            if len(seq) > length:
                seq = seq[:length]
                seq[-1] = self.ids[EOT_S]
            rows[r, : len(seq)] = seq
        return rows


@pytest.fixture(scope="module")
def ref():
    return Reference()


@pytest.fixture(scope="module")
def tok():
    return get_tokenizer()


# ------------------------------------------------------------------ inputs --
FRAGMENTS = [
    # plain captions
    "a photo of a cat.", "A Photo Of A CAT", "two dogs playing in the snow",
    "a man riding a bicycle down a busy street", "An old red bus parked next to a building.",
    "a bowl of fruit on a wooden table", "people walking on the beach at sunset",
    "a close-up of a flower", "the skyline of new york at night", "a giraffe eating leaves",
    # punctuation
    "Hello, world! How are you?", "wait... what?!", "(parentheses) [brackets] {braces}",
    "email: someone@example.com", "C++ / C# / F#", "a--b", "100% sure", "$5.99!!!", "#hashtag @mention",
    "path/to/file_name.jpg", "http://example.com/a?b=c&d=e", "x*y=z^2", "\"double\" 'single' `back`",
    "semi;colon:colon", "~tilde~", "a\\b", "<<>>", "|pipe|",
    # numbers
    "1984", "3.14", "in 2023 there were 1,000,000 people", "007 agent", "½ cup", "x²", "٣ apples",
    "Ⅻ o'clock", "10x faster", "3rd place",
    # contractions
    "it's", "don't", "we'll", "I'M HERE", "they've", "you're", "she'd", "IT'S", "rock'n'roll",
    "'s", "''s", "dogs' toys", "it’s curly", "don’t", "it'ſ long s", "'RE 'VE 'LL 'D 'M 'T",
    # html entities
    "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt;", "&quot;quoted&quot;", "it&#39;s", "&amp;amp;",
    "&amp;lt;tag&amp;gt;", "&amp;amp;amp;", "&nbsp;x", "&copy; 2020", "&#x41;&#66;", "&unknown;",
    "AT&T", "&amp", "<b>tag</b> &amp; more", "&lt;|endoftext|&gt;",
    # unicode
    "café", "cafe\u0301", "naïve résumé", "北京的天空很蓝", "東京タワーの写真", "서울의 밤", "🐱 cat emoji",
    "👩‍👩‍👧 family", "👍🏽 thumbs", "🇫🇷 flag", "ΟΔΟΣ ΣΟΦΙΑΣ", "σοφός", "İstanbul", "ISTANBUL ıi",
    "Straße", "STRASSE ẞ", "ﬁne ligature", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "zero\u200bwidth", "a\u200d\u200cb",
    "\ufeffbom", "non\u00a0breaking", "tab\tand\nnewline\r\n", "  leading and trailing  ", "cafÃ©",
    "Ã©tÃ©", "â€œquotedâ€\x9d", "Привет мир", "مرحبا بالعالم", "שלום", "नमस्ते", "สวัสดี", "ǄǅǆDž",
    "\u212a kelvin \u212b angstrom", "ſ long s", "\x1b[31mred\x1b[0m", "\x00null\x07bell", "\x85nel",
    "\u2028line\u2029sep", "ideographic\u3000space", "𝐁𝐨𝐥𝐝 𝓈𝒸𝓇𝒾𝓅𝓉", "Ⓐ circled", "\u0345ypogegrammeni",
    "\u0558\u058b\u088f\u0c5c\u0cdc\u208f\ua7ce\uab6c\U000107bb\U00010940", "\U0001f600\U0001f9d1\u200d\U0001f680",
    "\ue000private", "\U0010fffd", "lone\ud800surrogate", "pair \ud83d\ude00", "\x1cfile\x1fsep", "ﬀ ﬃ", "Ǳ", "ŉ", "ΐ", "ﬆ",
    # special token strings
    SOT_S, EOT_S, "a cat <|endoftext|>", "!<|endoftext|>", "<|ENDOFTEXT|>", "<|endoftext|><|startoftext|>",
    "x<|endoftext|>y", "it's<|endoftext|>", "1<|startoftext|>2", "<|ſtartoftext|>", "<|endoftext",
    "< |endoftext|>", "<|<|endoftext|>", "<|endoftext|>!", "<|startoftext|>'s",
    # empty / whitespace only
    "", " ", "\n\t ",
    # long
    " ".join(["word"] * 100), "a " * 80, "supercalifragilisticexpialidocious " * 12,
    " ".join(f"item{i}" for i in range(60)), "🙂" * 90,
]


def make_captions():
    rnd = random.Random(1234)
    caps = list(FRAGMENTS)
    for _ in range(250):  # deterministic mixtures of the fragments above
        parts = rnd.sample(FRAGMENTS, rnd.randint(2, 4))
        caps.append(rnd.choice([" ", "", ", ", "\n", " - "]).join(parts))
    return caps


def make_random_strings(n=300):
    rnd = random.Random(99)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r\x0b\x0c",
        "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "&amp;&lt;&#39;<|endoftext|>'s'T'LL",
        "éèêëàâçñöüßøåæœİıſΣσςΩ\u0301\u0308\u0345", "北京東京タワー서울한국", "😀🐱👍🏽\u200d🇫🇷",
        "\u00a0\u2000\u3000\u200b\u200c\ufeff\x85\u2028\x1c\x1f\x00\x7f\x1b",
        "ÃƒÂ©â€œ\x9d", "ΑΒΓαβγПриветمرحباשלוםनमस्ते", "ｆｕｌＬﬁﬂ½²Ⅻ٣𝐁",
    ]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rnd.randint(0, 60)):
            if rnd.random() < 0.2:  # any scalar value, assigned or not
                c = rnd.randrange(0x110000 - 0x800)
                chars.append(chr(c + 0x800 if c >= 0xD800 else c))
            else:
                chars.append(rnd.choice(rnd.choice(pools)))
        out.append("".join(chars))
    return out


CAPTIONS = make_captions()
RANDOM = make_random_strings()


# ------------------------------------------------------ vs plain reference --
@pytest.mark.parametrize("texts", [CAPTIONS, RANDOM], ids=["captions", "random"])
def test_matches_reference(tok, ref, texts):
    got = tok(texts)
    want = ref.tokenize(texts)
    bad = [t for t, g, w in zip(texts, got, want) if not np.array_equal(g, w)]
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:3]!r}"
    for t in texts[:100] + texts[-50:]:
        assert tok.encode(t) == ref.encode(t), t


def test_clean_matches_reference_on_ascii():
    # clean() skips ftfy for plain printable ASCII; check that shortcut on ASCII noise.
    rnd = random.Random(5)
    alphabet = [chr(c) for c in range(128)]
    for _ in range(2000):
        s = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        assert clean(s) == Reference.clean(s), repr(s)


def test_split_matches_regex_per_code_point():
    # The Rust-side split uses explicit code-point classes derived from `regex`;
    # probe each character between a letter, a punctuation mark and a digit.
    from tokenizers import Regex, pre_tokenizers

    from input_pipeline.clip_tokenizer import _onig_split_pattern

    split = pre_tokenizers.Split(Regex(_onig_split_pattern()), behavior="removed", invert=True)
    rnd = random.Random(7)
    points = list(range(0x3000)) + [0x17F, 0x345, 0x212A, 0xA7CE, 0x107BB, 0x10940]
    points += [p for p in rnd.sample(range(0x3000, 0x110000), 30000) if not 0xD800 <= p < 0xE000]
    for i in range(0, len(points), 4096):
        text = "".join(f"a{c}a !{c}! 1{c}1 '{c} " for c in map(chr, points[i : i + 4096]))
        assert [p for p, _ in split.pre_tokenize_str(text)] == Reference.split.findall(text)


# ------------------------------------------------- vs transformers (HF) --
def hf_comparable(text):
    """Whether transformers' CLIPTokenizer is expected to agree with OpenAI on `text`.

    transformers (v5, `tokenizers` backend) normalises with NFC + whitespace
    collapse + per-character lowercase, then splits with Oniguruma. Excluded, each
    a known difference of that design from OpenAI's Python code:
    - text that ftfy.fix_text or html.unescape would change (mojibake, curly quotes,
      ligatures, full-width forms, control characters, entities): transformers
      runs neither;
    - text containing '<|': transformers registers <|startoftext|>/<|endoftext|> as
      special added tokens matched anywhere and case-sensitively before the split,
      whereas CLIP maps them only where its split regex yields them as a piece
      (not in '!<|endoftext|>', but also in '<|ENDOFTEXT|>');
    - capital sigma: Python's str.lower gives final 'ς' at the end of a word,
      transformers' per-character lowercase always gives 'σ';
    - 'ſ' (U+017F) and U+0345: CLIP's regex is IGNORECASE, so "'ſ" is a contraction
      and U+0345 (folds to iota) matches no class and is dropped; transformers'
      split is case-sensitive;
    - code points unassigned in Python's own Unicode database: the `regex` module,
      Oniguruma and Rust's lowercase use different (newer) Unicode versions and
      classify or lowercase some of them differently.
    """
    if html.unescape(html.unescape(ftfy.fix_text(text))) != unicodedata.normalize("NFC", text):
        return False
    if "<|" in text or any(c in text for c in "\u03a3\u017f\u0345"):
        return False
    return all(unicodedata.category(c) != "Cn" for c in text)


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory, ref):
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("clip_hf")
    (d / "vocab.json").write_text(json.dumps(ref.ids), encoding="utf-8")
    merges = sorted(ref.rank, key=ref.rank.get)
    lines = "".join(f"{a} {b}\n" for a, b in merges)
    (d / "merges.txt").write_text("#version: 0.2\n" + lines, encoding="utf-8")
    return transformers.CLIPTokenizer.from_pretrained(str(d), local_files_only=True)


def test_matches_transformers(tok, hf_tok):
    texts = [t for t in CAPTIONS + RANDOM if hf_comparable(t)]
    assert len(texts) > 150
    want = hf_tok(texts, add_special_tokens=False)["input_ids"]
    bad = [t for t, w in zip(texts, want) if tok.encode(t) != w]
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:3]!r}"
    # transformers truncates to 77 keeping SOT/EOT, the same rule as clip.tokenize.
    hf = hf_tok(texts, truncation=True, max_length=L)["input_ids"]
    ours = tok(texts)
    for row, w in zip(ours, hf):
        assert list(row[: len(w)]) == w and not row[len(w) :].any()


# ------------------------------------------------------------ known ids --
def test_known_ids(tok, ref):
    ids = ref.ids
    words = ("<|startoftext|>", "a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", ".</w>", "<|endoftext|>")
    want = [ids[w] for w in words]
    assert want == [49406, 320, 1125, 539, 320, 2368, 269, 49407]  # as published with CLIP
    out = tok(["a photo of a cat.", "A  PHOTO of a cat ."])
    assert out.shape == (2, L) and out.dtype == np.int32
    for row in out:
        assert list(row[:8]) == want and not row[8:].any()
    assert tok.encode("a photo of a cat.") == want[1:-1]
    assert list(tok("")[0, :3]) == [49406, 49407, 0]
    assert tok.vocab_size == 49408 and (tok.sot_id, tok.eot_id) == (49406, 49407)
    assert tok("a cat").shape == (1, L)
    assert tok(["a cat"], context_length=16).shape == (1, 16)


def test_truncation(tok):
    long = "a dog " * 100
    row = tok(long)[0]
    assert row.shape == (L,) and row[-1] == 49407 and row[0] == 49406 and (row[1:-1] != 0).all()
    with pytest.raises(ValueError, match=r"'a dog a dog .*' is 202 tokens"):  # 200 + SOT + EOT
        tok(long, truncate=False)
    exact = "cat " * (L - 2)  # SOT + 75 + EOT fits exactly
    assert tok(exact, truncate=False)[0, -1] == 49407


def test_bad_input(tok):
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        tok(["ok", 3])
    with pytest.raises(TypeError, match="bytes"):
        tok([b"bytes"])


def test_get_tokenizer_cached():
    assert get_tokenizer() is get_tokenizer()
    assert get_tokenizer(32).context_length == 32
    assert isinstance(get_tokenizer(), ClipTokenizer)
