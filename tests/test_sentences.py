"""Streamed text -> sentences: pure, so every split of the stream must give the same sentences."""

from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from voiced.agent.sentences import SentenceSplitter


def split_all(chunks, **kwargs):
    splitter = SentenceSplitter(**kwargs)
    out = []
    for chunk in chunks:
        out += splitter.push(chunk)
    return out + splitter.flush()


TEXT = ("Hello there! We open at 8 a.m. on Monday. Dr. Smith sees patients, e.g. on Tuesdays. "
        "The fee is 3.5 dollars.\n\nAnything else?")


class SentenceSplitterTests(SynchronousTestCase):
    def test_sentences_abbreviations_and_numbers(self):
        self.assertEqual(split_all([w + " " for w in TEXT.split(" ")]), split_all([TEXT + " "]))
        self.assertEqual(split_all([TEXT]), [
            "Hello there!", "We open at 8 a.m. on Monday.", "Dr. Smith sees patients, e.g. on Tuesdays.",
            "The fee is 3.5 dollars.", "Anything else?"])

    def test_a_sentence_is_released_as_soon_as_it_is_confirmed(self):
        splitter = SentenceSplitter()
        self.assertEqual(splitter.push("We are open."), [])  # "open.5"? the next character tells
        self.assertEqual(splitter.push(" Come"), ["We are open."])
        self.assertEqual(splitter.flush(), ["Come"])

    def test_a_long_first_clause_goes_early_and_later_ones_do_not(self):
        first = "Well, since you asked about our opening hours in detail, "
        self.assertEqual(SentenceSplitter().push(first + "we open"), [first.strip()])
        splitter = SentenceSplitter()
        splitter.push("Sure. ")
        self.assertEqual(splitter.push(first + "we open"), [])

    def test_text_without_boundaries_is_cut_at_a_word(self):
        pieces = split_all(["word " * 100], max_chars=60)
        self.assertTrue(all(len(p) <= 60 for p in pieces))
        self.assertEqual(" ".join(pieces), ("word " * 100).strip())

    def test_quotes_and_cjk(self):
        self.assertEqual(split_all(['He said "stop." Then left.']), ['He said "stop."', "Then left."])
        self.assertEqual(split_all(["你好。我们八点开门。"]), ["你好。", "我们八点开门。"])

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=len(TEXT)), max_size=30))
    def test_any_split_of_the_stream_gives_the_same_sentences(self, cuts):
        cuts = sorted(set(cuts))
        chunks = [TEXT[a:b] for a, b in zip([0] + cuts, cuts + [len(TEXT)])]
        self.assertEqual(split_all(chunks), split_all([TEXT]))
