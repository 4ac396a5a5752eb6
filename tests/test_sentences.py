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


BIDI_MARKS = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Hebrew abbreviations ending in a full stop that must never end a piece, in the ways
# they are typed: ASCII or Hebrew gershayim/geresh, bare or behind a prefix letter.
HEBREW_ABBREVIATIONS = ['ד"ר.', "ד״ר.", "לד״ר.", "פרופ.", "ולפרופ.", "גב.", "גב'.", "כב.", "רח.",
                        "רח׳.", "שד.", "עמ.", "בעמ.", "ת.ד.", "וכו.", "וכו'.", "וכד."]
# Abbreviations only before a number: "מס. 5" is "No. 5", "שילמנו מס." is "we paid tax".
HEBREW_NUMBER_ABBREVIATIONS = ["מס.", "טל.", "ת.ז.", "ח.פ.", "ע.מ."]
HEBREW_WORDS = ["שלום", "תודה", "מה", "שלומך", "אני", "בסדר", 'ת"א', "ת״א", "ג'ירפה", "כהן",
                "הרצל", "5", "03-1234567", "3.5", "8:30", "Hello", "world", "Dr.", "e.g.", "etc"]
ENDINGS = ["", "", "", ".", "!", "?", "...", "\u2026", "\u05c3", '."', ".\u05f4", "?'", ",", ":",
           ".\u200f", "!\u200e", ".\u202c", "?\u2069", ".\u200f\u2069", ".\u061c"]
GAPS = [" ", " ", " ", "  ", "\n", "\t", " \u200f", " \u202b", " \u2067", "\u200f ", "\n\u200f "]

words = st.one_of(
    st.tuples(st.sampled_from(HEBREW_WORDS), st.sampled_from(ENDINGS)).map("".join),
    st.sampled_from(HEBREW_ABBREVIATIONS + HEBREW_NUMBER_ABBREVIATIONS),
)
mixed_text = st.lists(st.tuples(words, st.sampled_from(GAPS)).map("".join), min_size=1,
                      max_size=25).map("".join)


def speakable(text):
    return any(not (c.isspace() or c in BIDI_MARKS) for c in text)


def chunked(text, cuts):
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


def gaps_between(text, pieces):
    """The text between consecutive pieces, failing unless the pieces are the text in
    order with only whitespace between them, and then only whitespace or bidi marks."""
    gaps, rest = [], text
    for piece in pieces:
        stripped = rest.lstrip()
        if not stripped.startswith(piece):
            raise AssertionError(f"{piece!r} is not what follows in {rest!r}")
        gaps.append(rest[:len(rest) - len(stripped)])
        rest = stripped[len(piece):]
    if speakable(rest):
        raise AssertionError(f"{rest!r} was left unsaid")
    return gaps[1:] + [rest]


class HebrewSentenceTests(SynchronousTestCase):
    def test_hebrew_sentences_with_bidi_marks_after_the_full_stop(self):
        self.assertEqual(split_all(["שלום.\u200f מה שלומך?\u200f אני בסדר.\u200e תודה!\u2069 ביי"]),
                         ["שלום.\u200f", "מה שלומך?\u200f", "אני בסדר.\u200e", "תודה!\u2069", "ביי"])
        self.assertEqual(split_all(["\u2067שלום.\u2069 \u2067מה נשמע?\u2069"]),
                         ["\u2067שלום.\u2069", "\u2067מה נשמע?\u2069"])

    def test_hebrew_abbreviations_do_not_end_sentences(self):
        self.assertEqual(split_all(['המשרד נמצא ברח׳ הרצל 5, ת"א. ד"ר כהן ופרופ. לוי מקבלים ב-שד. '
                                    "רוטשילד, ראה עמ. 4 ו-ת.ד. 17. תפוחים, אגסים וכו'. זהו."]),
                         ['המשרד נמצא ברח׳ הרצל 5, ת"א.', 'ד"ר כהן ופרופ. לוי מקבלים ב-שד. רוטשילד, '
                          "ראה עמ. 4 ו-ת.ד. 17.", "תפוחים, אגסים וכו'. זהו."])
        self.assertEqual(split_all(["לכבוד גב. כהן, רח. הרצל 5. לד״ר לוי יש תור."]),
                         ["לכבוד גב. כהן, רח. הרצל 5.", "לד״ר לוי יש תור."])

    def test_abbreviations_that_are_also_words_count_only_before_a_number(self):
        self.assertEqual(split_all(["התקשרו לטלפון טל. 03-1234567. שמי טל. הבית מס. 4. שילמנו מס. "
                                    "נא להביא ת.ז. ובמס. 7 יש תור."]),
                         ["התקשרו לטלפון טל. 03-1234567.", "שמי טל.", "הבית מס. 4.", "שילמנו מס.",
                          "נא להביא ת.ז.", "ובמס. 7 יש תור."])
        splitter = SentenceSplitter()
        self.assertEqual(splitter.push("שמי טל. \u200f"), [])  # a phone number may follow yet
        self.assertEqual(splitter.push("איך"), ["שמי טל."])

    def test_a_prefix_letter_can_make_an_abbreviation_a_word(self):
        # "ברח." is "he fled", not "at street"; "שכב." is "he lay down".
        self.assertEqual(split_all(["הכלב ברח. החתול שכב. הסוף"]), ["הכלב ברח.", "החתול שכב.", "הסוף"])

    def test_gershayim_and_geresh_are_not_closing_quotes(self):
        self.assertEqual(split_all(['הוא אמר "אני גר בת"א." ואז הלך לד"ר.']),
                         ['הוא אמר "אני גר בת"א."', 'ואז הלך לד"ר.'])
        self.assertEqual(split_all(["המחיר 50 ש\"ח. הג'ירפה ב-צ'ק פוסט! ת״א׳ שלום"]),
                         ['המחיר 50 ש"ח.', "הג'ירפה ב-צ'ק פוסט!", "ת״א׳ שלום"])
        self.assertEqual(split_all(["הוא אמר ״כן.״ ואז הלך."]), ["הוא אמר ״כן.״", "ואז הלך."])

    def test_sof_pasuq_ends_a_sentence(self):
        self.assertEqual(split_all(["בראשית ברא אלהים את השמים ואת הארץ׃ והארץ היתה תהו ובהו׃"]),
                         ["בראשית ברא אלהים את השמים ואת הארץ׃", "והארץ היתה תהו ובהו׃"])

    def test_a_bidi_mark_opening_the_next_sentence_stays_with_it(self):
        self.assertEqual(split_all(["שלום. \u200fמה שלומך?"]), ["שלום.", "\u200fמה שלומך?"])
        self.assertEqual(split_all(["שלום. \u200f\nמה שלומך?"]), ["שלום.", "\u200f\nמה שלומך?"])
        # marks with nothing after them direct nothing: no empty sentence is spoken
        self.assertEqual(split_all(["שלום. \u200f\u2069 "]), ["שלום."])
        self.assertEqual(split_all(["\u200f"]), [])

    @settings(max_examples=300, deadline=None)
    @given(mixed_text, st.lists(st.integers(min_value=0), max_size=20),
           st.integers(min_value=10, max_value=300), st.integers(min_value=5, max_value=80))
    def test_pieces_are_the_text_however_it_streams(self, text, cuts, max_chars, first_clause):
        pieces = split_all(chunked(text, cuts), max_chars=max_chars, first_clause_chars=first_clause)
        gaps_between(text, pieces)
        self.assertTrue(all(speakable(piece) for piece in pieces), pieces)

    @settings(max_examples=300, deadline=None)
    @given(mixed_text, st.lists(st.integers(min_value=0), max_size=20))
    def test_abbreviations_never_end_a_piece_and_streaming_does_not_matter(self, text, cuts):
        no_limits = dict(max_chars=10**6, first_clause_chars=10**6)
        pieces = split_all(chunked(text, cuts), **no_limits)
        self.assertEqual(pieces, split_all([text], **no_limits))
        gaps = gaps_between(text, pieces)
        for piece, gap, following in zip(pieces, gaps, pieces[1:]):
            if "\n" in gap:
                continue  # a line break always ends a piece
            last_word = piece.split()[-1].strip(BIDI_MARKS)
            self.assertNotIn(last_word, HEBREW_ABBREVIATIONS, pieces)
            if last_word in HEBREW_NUMBER_ABBREVIATIONS:
                self.assertFalse(following.lstrip(BIDI_MARKS)[:1].isdigit(), pieces)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.lists(st.sampled_from(["שלום", "עולם", 'ת"א', "Hello", "5"]),
                                       min_size=1, max_size=4).map(" ".join),
                              st.sampled_from([".", "!", "?", "\u05c3", "...", '."']),
                              st.text(alphabet=BIDI_MARKS, min_size=1, max_size=3)).map("".join),
                    min_size=1, max_size=8),
           st.lists(st.integers(min_value=0), max_size=20))
    def test_a_sentence_end_followed_by_bidi_marks_splits(self, sentences, cuts):
        text = " ".join(sentences)
        pieces = split_all(chunked(text, cuts), max_chars=10**6, first_clause_chars=10**6)
        self.assertEqual(pieces, sentences)
