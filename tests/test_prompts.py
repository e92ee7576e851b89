"""Prompt templates, in-graph prompts and batch tokenisation."""
import pytest

from input_pipeline import templates


@pytest.mark.parametrize("name,count", [("clip_80", 80), ("imagenet_7", 7), ("segmentation", 1)])
def test_template_sets_have_expected_counts_and_one_slot_each(name, count):
    chosen = templates.TEMPLATE_SETS[name]
    assert len(chosen) == count
    assert len(set(chosen)) == count
    assert all(t.count("{}") == 1 for t in chosen)


def test_template_sets_ends_and_subsets():
    assert templates.CLIP_80[0] == "a bad photo of a {}."
    assert templates.CLIP_80[-1] == "a tattoo of the {}."
    assert set(templates.IMAGENET_7) <= set(templates.CLIP_80)
    assert templates.SEGMENTATION == ("a photo of a {}.",)


def _prompts(nouns, seed, k=3, caption="the caption"):
    import tensorflow as tf

    from input_pipeline.prompts import make_prompts
    out = make_prompts(tf.constant(caption), tf.constant(nouns, tf.string),
                       tf.constant([seed, 7], tf.int64), k)
    return [s.decode() for s in out.numpy()]


def _noun_of(prompt):
    """The noun a CLIP_80 template was filled with (None: not a filled template). The most
    specific template wins ("a photo of a nice {}." over "a photo of a {}.")."""
    nouns = [prompt[len(before):len(prompt) - len(after)]
             for before, after in (t.split("{}") for t in templates.CLIP_80)
             if prompt.startswith(before) and prompt.endswith(after)
             and len(prompt) >= len(before) + len(after)]
    return min(nouns, key=len, default=None)


def test_prompts_pick_distinct_noun_positions_with_clip_templates():
    for seed in range(20):
        out = _prompts(["n0", "n1", "n2", "n3"], seed)
        assert len(out) == 4 and out[0] == "the caption"
        picked = [_noun_of(p) for p in out[1:]]
        assert len(set(picked)) == 3 and set(picked) <= {"n0", "n1", "n2", "n3"}


def test_a_repeated_word_can_fill_two_slots_and_missing_slots_get_the_caption():
    out = _prompts(["dog", "dog"], 0)
    assert [_noun_of(p) for p in out[1:3]] == ["dog", "dog"] and out[3] == "the caption"
    out = _prompts(["cat"], 1)
    assert _noun_of(out[1]) == "cat" and out[2:] == ["the caption", "the caption"]
    assert _prompts([], 2) == ["the caption"] * 4
    assert _prompts(["cat"], 3, k=0) == ["the caption"]


def test_prompts_are_a_function_of_the_seed_and_use_all_templates():
    assert _prompts(["a", "b", "c", "d"], 5) == _prompts(["a", "b", "c", "d"], 5)
    used = {p[:-len("x.")] for seed in range(150) for p in _prompts(["x"], seed, k=1)[1:]}
    # 150 uniform draws from 80 templates miss about 80 * exp(-150/80) = 12 of them.
    assert 55 <= len(used) <= 80


def test_template_without_slot_is_an_error():
    from input_pipeline.prompts import split_templates
    with pytest.raises(ValueError, match="exactly one"):
        split_templates(["no slot here"])


def test_clip_batch_tokenizer_matches_clip_tokenizer():
    import numpy as np
    import tensorflow as tf

    from input_pipeline.clip_tokenizer import get_tokenizer
    from input_pipeline.tokenize_ops import make_tokenizer
    texts = [["a dog", "Café &amp; crème " * 20, ""], ["x", "a photo of a dog.", "ÅÄÖ"]]
    tokens = tf.function(make_tokenizer("clip", 77))(tf.constant(texts)).numpy()
    assert tokens.shape == (2, 3, 77) and tokens.dtype == np.int32
    expected = get_tokenizer(77)([t for row in texts for t in row]).reshape(2, 3, 77)
    np.testing.assert_array_equal(tokens, expected)
    assert tokens[0, 1, 76] == 49407  # truncated: EOT kept last


def test_sentencepiece_tokenizer_puts_eot_highest(tmp_path):
    import numpy as np
    import sentencepiece
    import tensorflow as tf

    from input_pipeline import tokenize_ops
    from input_pipeline.train_sentencepiece import main
    from tests.train_records import write_dataset

    write_dataset(tmp_path / "d", "d", (30, 30))
    assert main(["train_sentencepiece", "--data", str(tmp_path / "d"), "--vocab_size", "24",
                 "--out", str(tmp_path / "sp")]) == 0
    spec = f"sentencepiece:{tmp_path / 'sp.model'}"
    tok = tokenize_ops.make_tokenizer(spec, 12)
    assert (tok.vocab_size, tok.sot_id, tok.eot_id) == (27, 25, 26)
    out = tok(tf.constant([["a dog", "a dog number 12 13 14 15 16 17 18"]])).numpy()
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "sp.model")).encode(
        ["a dog", "a dog number 12 13 14 15 16 17 18"])
    short = [25, *(p + 1 for p in pieces[0]), 26]
    assert len(short) <= 12 and len(pieces[1]) > 10
    np.testing.assert_array_equal(out[0, 0], short + [0] * (12 - len(short)))
    np.testing.assert_array_equal(out[0, 1], [25, *(p + 1 for p in pieces[1][:10]), 26])
    with pytest.raises(ValueError, match="model.text.vocab_size=49408; set "
                                         "--config.model.text.vocab_size=27"):
        tokenize_ops.check_vocab_size(tok, 49408, spec)
