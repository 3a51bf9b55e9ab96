"""Word splitting, candidate rules, case matching and splicing replacements into text."""

from tinybert_core.augment.words import Word, is_candidate_word, match_case, replace_words, split_words


def test_split_words_keeps_punctuation_out_and_spans_exact() -> None:
    text = 'It\'s a long-term, "charming" film (2002)!'
    words = split_words(text)
    assert [w.text for w in words] == ["It", "s", "a", "long", "term", "charming", "film", "2002"]
    assert all(text[w.start : w.end] == w.text for w in words)


def test_candidates_are_alphabetic_non_stopwords() -> None:
    assert is_candidate_word("film") and is_candidate_word("Charming")
    assert not is_candidate_word("The")  # stopword, case-insensitive
    assert not is_candidate_word("doesn") and not is_candidate_word("t")
    assert not is_candidate_word("2002") and not is_candidate_word("mp3")


def test_match_case_follows_the_replaced_word() -> None:
    assert match_case("movie", "Film") == "Movie"
    assert match_case("movie", "FILM") == "MOVIE"
    assert match_case("movie", "film") == "movie"
    assert match_case("movie", "A") == "Movie"  # one capital letter is Capitalised, not ALL CAPS


def test_replace_words_changes_only_the_given_spans() -> None:
    text = "  a charming,  often affecting journey . "
    words = {w.text: w for w in split_words(text)}
    out = replace_words(text, {words["journey"]: "trip", words["charming"]: "lovely"})
    assert out == "  a lovely,  often affecting trip . "
    assert replace_words(text, {}) == text
    assert replace_words("x", {Word("x", 0, 1): "yy"}) == "yy"
