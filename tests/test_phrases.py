"""The phrase catalogs, language tags and which Google model serves a language: pure, no I/O
beyond reading the shipped files."""

from twisted.trial.unittest import SynchronousTestCase

from voiced.google.models import default_stt_model, refusal
from voiced.language import canonical, primary
from voiced.phrases import PHRASE_KEYS, CatalogError, builtin, load_catalog, parse_catalog


class CatalogTests(SynchronousTestCase):
    def test_every_shipped_catalog_has_every_key(self):
        for name in ("en", "he"):
            self.assertEqual(set(builtin(name)), set(PHRASE_KEYS), name)

    def test_a_language_finds_its_catalog_by_tag_then_by_language(self):
        self.assertEqual(load_catalog("he-IL").source, "he")
        self.assertEqual(load_catalog("iw-IL").source, "he")  # Hebrew's retired code, still sent
        self.assertEqual(load_catalog("he-il")["filler"], "רק רגע.")
        french = load_catalog("fr-FR")
        self.assertEqual((french.source, french["filler"], french["language_name"]), ("en", "One moment.", "fr-FR"))

    def test_a_file_over_the_catalog_and_options_over_both(self):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("# fr\nlanguage_name = French\nfiller = Un instant.\n")
        catalog = load_catalog("fr-FR", path, {"apology": "Désolé.", "goodbye": ""})
        self.assertEqual((catalog["language_name"], catalog["filler"], catalog["apology"], catalog["goodbye"]),
                         ("French", "Un instant.", "Désolé.", "Goodbye."))
        self.assertIn("idle_goodbye", catalog.from_fallback)  # named at start-up: said in English
        self.assertNotIn("filler", catalog.from_fallback)

    def test_a_bad_line_names_its_file_and_line(self):
        for text, problem in (("filler One moment", "expected 'key = text'"), ("nonsense = x", "expected"),
                              ("filler =", "filler is empty"), ("filler = a\nfiller = b", "set twice")):
            e = self.assertRaises(CatalogError, parse_catalog, text, "fr.txt")
            self.assertIn("fr.txt:", str(e))
            self.assertIn(problem, str(e))


class LanguageTagTests(SynchronousTestCase):
    def test_tags_as_files_are_named(self):
        self.assertEqual([canonical(t) for t in ("pt-br", "iw-IL", "zh-hant-tw", "es-419", "he")],
                         ["pt-BR", "he-IL", "zh-Hant-TW", "es-419", "he"])
        self.assertEqual([primary(t) for t in ("he-IL", "iw", "EN-us")], ["he", "he", "en"])


class GoogleModelTests(SynchronousTestCase):
    def test_the_phone_model_where_google_offers_it_else_the_one_every_language_has(self):
        self.assertEqual(default_stt_model("en-US"), "phone_call")
        self.assertEqual(default_stt_model("he-IL"), "default")
        self.assertIsNone(refusal("default", "he-IL"))
        self.assertIsNone(refusal("latest_long", "he-IL"))  # not restricted as far as we know: tried

    def test_a_known_refusal_is_fatal_an_unlisted_pair_only_suspicious(self):
        known, why = refusal("phone_call", "iw-IL")
        self.assertTrue(known)
        self.assertIn("leave VOICED_STT_MODEL unset for default", why)
        known, why = refusal("phone_call", "it-IT")
        self.assertFalse(known)
        self.assertIn("not listed for it-IT", why)
