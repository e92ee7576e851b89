"""Noun extraction: expected words written by hand from the Penn tags noted beside each."""
import pytest

from input_pipeline import nouns

CAPTIONS = [
    # A/DT dog/NN is/VBZ running/VBG on/IN the/DT beach/NN ,/, chasing/VBG two/CD red/JJ
    # balls/NNS ./.
    ("A dog is running on the beach, chasing two red balls.",
     ["dog", "is", "running", "beach", "chasing", "balls"]),
    # The/DT man/NN 's/POS hat/NN is/VBZ n't/RB blue/JJ ./.  (Treebank splits the clitics)
    ("The man's hat isn't blue.", ["man", "hat", "is"]),
    # Actor/NN attends/VBZ the/DT premiere/NN of/IN the/DT film/NN in/IN London/NNP;
    # capitals are kept as written.
    ("Actor attends the premiere of the film in London",
     ["Actor", "attends", "premiere", "film", "London"]),
    # Nouns used as modifiers are still NN.
    ("vector illustration of a cartoon cat", ["vector", "illustration", "cartoon", "cat"]),
    # a/DT woman/NN holding/VBG an/DT umbrella/NN walked/VBD across/IN the/DT street/NN
    ("a woman holding an umbrella walked across the street",
     ["woman", "holding", "umbrella", "walked", "street"]),
    # people/NNS have/VBP painted/VBN the/DT old/JJ houses/NNS
    ("people have painted the old houses", ["people", "have", "painted", "houses"]),
    # Americans/NNPS love/NN to/TO swim/VB: NNPS is not among the kept tags.
    ("Americans love to swim", ["love", "swim"]),
    # Duplicates stay, in caption order.
    ("the dog and the dog", ["dog", "dog"]),
    # Two sentences: "sofa." loses its period as word_tokenize's sentence split would do.
    # Two/CD cats/NNS sleeping/VBG on/IN a/DT sofa/NN ./. A/DT dog/NN is/VBZ asleep/RB ./.
    ("Two cats sleeping on a sofa. A dog is asleep.", ["cats", "sleeping", "sofa", "dog", "is"]),
    # Initials and acronyms keep their periods: J./NNP Smith/NNP visited/VBD the/DT
    # U.S./NNP in/IN June/NNP
    ("J. Smith visited the U.S. in June", ["J.", "Smith", "visited", "U.S.", "June"]),
    # Punctuation is tagged as punctuation: a/DT cat/NN (/( left/VBN )/) and/CC a/DT dog/NN
    # :/: friends/NNS !/.
    ("a cat (left) and a dog: friends!", ["cat", "left", "dog", "friends"]),
    # Non-ASCII words: Zoë/NNP bought/VBD fresh/JJ apples/NNS
    ("Zoë bought fresh apples", ["Zoë", "bought", "apples"]),
]


@pytest.mark.parametrize("caption,expected", CAPTIONS)
def test_extract_nouns(caption, expected):
    assert nouns.extract_nouns(caption) == expected


@pytest.mark.parametrize("caption", ["", "   \n", "!!! ... ,,,", "-- (( ))"])
def test_nothing_to_keep(caption):
    assert nouns.extract_nouns(caption) == []


def test_unknown_tagger():
    with pytest.raises(ValueError, match="unknown tagger 'spacy'"):
        nouns.extract_nouns("a dog", tagger="spacy")
    with pytest.raises(ValueError, match="unknown tagger"):
        nouns.tagger_info("spacy")


def test_nltk_without_its_data_names_what_is_missing(monkeypatch, tmp_path):
    import nltk
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    nouns.get_tagger.cache_clear()
    try:
        with pytest.raises(LookupError) as error:
            nouns.extract_nouns("a dog", tagger="nltk")
    finally:
        nouns.get_tagger.cache_clear()
    message = str(error.value)
    assert "punkt_tab" in message and "averaged_perceptron_tagger_eng" in message
    assert "'pattern'" in message


@pytest.fixture
def toy_nltk_data(monkeypatch, tmp_path):
    """NLTK data made here: a perceptron trained on two tagged sentences (each word seen
    often enough to enter its tag dictionary, so its tag is exact) and empty punkt tables."""
    import nltk
    from nltk.tag.perceptron import PerceptronTagger
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    sentences = [[("A", "DT"), ("dog", "NN"), ("runs", "VBZ"), (".", ".")],
                 [("The", "DT"), ("cats", "NNS"), ("sleep", "VBP"), ("quietly", "RB"),
                  (".", ".")]]
    perceptron = PerceptronTagger(load=False)
    perceptron.train(sentences * 25, nr_iter=2)
    tagger_dir = tmp_path / "taggers" / "averaged_perceptron_tagger_eng"
    tagger_dir.mkdir(parents=True)
    perceptron.save_to_json(lang="eng", loc=str(tagger_dir))
    punkt_dir = tmp_path / "tokenizers" / "punkt_tab" / "english"
    punkt_dir.mkdir(parents=True)
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt",
                 "ortho_context.tab"):
        (punkt_dir / name).touch()
    nouns.get_tagger.cache_clear()
    yield
    nouns.get_tagger.cache_clear()


def test_nltk_tagger_keeps_the_perceptrons_nouns_and_verbs(toy_nltk_data):
    # word_tokenize splits the sentences (and "runs." from its period); the toy model
    # tags The/DT cats/NNS sleep/VBP quietly/RB ./. A/DT dog/NN runs/VBZ ./.
    assert nouns.extract_nouns("The cats sleep quietly. A dog runs.", tagger="nltk") == [
        "cats", "sleep", "dog", "runs"]


def test_tagger_info():
    import importlib.metadata
    info = nouns.tagger_info("pattern")
    assert info == {"tagger": "pattern", "version":
                    f"textblob=={importlib.metadata.version('textblob')},"
                    f"nltk=={importlib.metadata.version('nltk')}"}
    assert nouns.tagger_info("nltk")["version"].startswith("nltk==")
