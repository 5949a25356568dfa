"""The Keras word tokenizer and pad_sequences, against hand-worked cases of Keras' algorithm."""

from __future__ import annotations

import pytest
import torch

from focalcal.data.text import KERAS_FILTERS, Tokenizer, pad_sequences, text_to_word_sequence
from focalcal.errors import InputError


def test_filters_are_keras_punctuation_plus_tab_and_newline():
    assert KERAS_FILTERS == '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~' + "\t\n"


def test_words_are_lower_cased_split_on_filtered_characters_and_spaces():
    text = "Hello, World!\tIt's  e-mail\n(OK)...done"
    assert text_to_word_sequence(text) == ["hello", "world", "it's", "e", "mail", "ok", "done"]
    # every filter character separates words; the apostrophe, \r and a non-breaking space do not
    assert text_to_word_sequence("x".join(KERAS_FILTERS)) == ["x"] * (len(KERAS_FILTERS) - 1)
    assert text_to_word_sequence("Don't\rGo\xa0Now") == ["don't\rgo\xa0now"]
    assert text_to_word_sequence("Ab CD", lower=False) == ["Ab", "CD"]


def test_word_index_by_descending_count_ties_in_order_of_first_appearance():
    # counts: c 1, b 2, a 2, d 3 -> d (3), then b and a (2; b appears first), then c
    tok = Tokenizer(num_words=None).fit(["c b a", "a b d", "D d."])
    assert tok.word_index == {"d": 1, "b": 2, "a": 3, "c": 4}
    assert tok.word_counts == {"c": 1, "b": 2, "a": 2, "d": 3}
    assert tok.document_count == 3
    assert tok.vocabulary() == ["<pad>", "d", "b", "a", "c"]


def test_a_second_fit_adds_counts_as_fit_on_texts_does():
    tok = Tokenizer(num_words=None).fit(["a b b"]).fit(["a a"])
    assert tok.word_counts == {"a": 3, "b": 2} and tok.word_index == {"a": 1, "b": 2}
    assert tok.document_count == 2


def test_num_words_keeps_ids_below_it_and_drops_the_rest():
    tok = Tokenizer(num_words=3).fit(["c b a", "a b d", "d d"])  # d 1, b 2, a 3, c 4
    assert tok.texts_to_sequences(["A b c d unseen d", ""]) == [[2, 1, 1], []]
    assert tok.vocabulary() == ["<pad>", "d", "b"]  # the num_words - 1 most frequent words
    assert Tokenizer(num_words=None).fit(["c b a", "a b d", "d d"]).texts_to_sequences(["a c"]) == [[3, 4]]
    # fewer distinct words than num_words: every word is kept
    assert Tokenizer(num_words=100).fit(["x y"]).vocabulary() == ["<pad>", "x", "y"]


def test_pre_padding_and_pre_truncation():
    out = pad_sequences([[1, 2, 3, 4, 5], [6], [], [7, 8, 9]], maxlen=3)
    assert out.dtype == torch.int64
    assert out.tolist() == [[3, 4, 5], [0, 0, 6], [0, 0, 0], [7, 8, 9]]
    post = pad_sequences([[1, 2, 3, 4, 5], [6]], maxlen=3, padding="post", truncating="post")
    assert post.tolist() == [[1, 2, 3], [6, 0, 0]]


def test_tokenizer_to_padded_ids_end_to_end():
    tok = Tokenizer(num_words=4).fit(["the cat, the hat", "The bat; the cat."])  # the 4, cat 2, hat 1, bat 1
    assert tok.word_index == {"the": 1, "cat": 2, "hat": 3, "bat": 4}
    seqs = tok.texts_to_sequences(["The bat saw the cat and the hat!"])
    assert seqs == [[1, 1, 2, 1, 3]]  # bat (id 4 >= num_words) and the unseen words dropped
    assert pad_sequences(seqs, maxlen=7).tolist() == [[0, 0, 1, 1, 2, 1, 3]]
    assert pad_sequences(seqs, maxlen=3).tolist() == [[2, 1, 3]]  # the last maxlen ids


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="fit"):
        Tokenizer().texts_to_sequences(["a"])
    with pytest.raises(InputError, match="num_words"):
        Tokenizer(num_words=1)
    with pytest.raises(InputError, match="maxlen"):
        pad_sequences([[1]], maxlen=0)
    with pytest.raises(InputError, match="padding"):
        pad_sequences([[1]], maxlen=2, padding="middle")
