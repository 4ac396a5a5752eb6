"""Each default is written once, in the option table (``voiced.options``).

``Settings`` takes every option's default from the table; the narrower settings objects
(the call's, the LLM agent's, the turn policies') and the engines' parameters refer to it.
These tests fail when a second copy of a default is written anywhere it could drift.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from voiced.agent.llm import LLMSettings
from voiced.agent.tools import ToolRunner
from voiced.call.model import TurnSettings
from voiced.config import Settings
from voiced.options import BY_NAME, OPTIONS
from voiced.turns.barge_in import BargeInSettings
from voiced.turns.policy import EndOfTurnSettings

PACKAGE = Path(__file__).resolve().parent.parent / "voiced"

#: Settings fields that are not options: their values come from elsewhere (see Settings.load).
NOT_OPTIONS = {"listen", "google_credentials_file", "openai_api_key", "twilio_account_sid", "twilio_rest_token"}


def same(x: Any) -> Any:
    return x


def ms_to_s(ms: int) -> float:
    return ms / 1000


#: (a narrower settings class, its field) -> (the option it stands for, the conversion).
NARROWER: dict[tuple[type, str], tuple[str, Callable[[Any], Any]]] = {
    (TurnSettings, "barge_in_ms"): ("barge_in_ms", same),
    (TurnSettings, "false_interruption_ms"): ("false_interruption_ms", same),
    (TurnSettings, "final_timeout_ms"): ("stt_final_timeout_ms", same),
    (TurnSettings, "fallback_timeout_ms"): ("stt_fallback_timeout_ms", same),
    (TurnSettings, "filler_ms"): ("agent_filler_ms", same),
    (TurnSettings, "idle_reprompt_ms"): ("idle_reprompt_ms", same),
    (TurnSettings, "idle_max_reprompts"): ("idle_max_reprompts", same),
    (TurnSettings, "max_call_s"): ("max_call_s", same),
    (TurnSettings, "outbound_hello_timeout_ms"): ("outbound_hello_timeout_ms", same),
    (LLMSettings, "base_url"): ("openai_base_url", same),
    (LLMSettings, "model"): ("openai_model", same),
    (LLMSettings, "temperature"): ("llm_temperature", same),
    (LLMSettings, "max_tokens"): ("llm_max_tokens", lambda n: n or None),
    (LLMSettings, "first_token_timeout_s"): ("llm_first_token_timeout_ms", ms_to_s),
    (LLMSettings, "reply_timeout_s"): ("llm_reply_timeout_ms", ms_to_s),
    (EndOfTurnSettings, "model_threshold"): ("turn_model_threshold", same),
    (BargeInSettings, "echo_margin_db"): ("echo_guard_db", same),
    (BargeInSettings, "background_margin_db"): ("background_margin_db", same),
}

#: Folders with a command line of their own (voiced-call, voiced-emulator): same names, other programs.
OTHER_PROGRAMS = ("caller", "emulator")


def empty(value: Any) -> bool:
    """"", 0, None, False, (): unset or off, not a tuned value a copy of which could drift."""
    return not value


def defaults_in(tree: ast.AST) -> list[tuple[str, ast.expr]]:
    """(name, default expression) of every annotated class field and function parameter."""
    found: list[tuple[str, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found.append((node.target.id, node.value))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            found.extend((a.arg, d) for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults))
            found.extend((a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None)
    return found


def refers_to_option(expr: ast.expr, name: str) -> bool:
    """``expr`` reads option ``name``'s default (``default("name")``, maybe converted)."""
    return any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("default", "option")
               and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == name
               for node in ast.walk(expr))


def literal(expr: ast.expr) -> Any:
    try:
        return ast.literal_eval(expr)
    except ValueError:
        return MISSING


class SettingsDefaultsTests(SynchronousTestCase):
    def test_every_option_is_a_settings_field_with_the_tables_default(self):
        by_field = {f.name: f for f in fields(Settings)}
        defaults = Settings()
        for opt in OPTIONS:
            with self.subTest(option=opt.name):
                self.assertIn(opt.name, by_field, f"option {opt.name} has no Settings field")
                f = by_field[opt.name]
                # Written as option("name"): the default is the table's, not a second copy.
                self.assertEqual(f.metadata.get("option"), opt.name,
                                 f'write Settings.{opt.name} as option("{opt.name}"), its default in the table')
                self.assertEqual(getattr(defaults, opt.name), opt.default)
                self.assertEqual(f.repr, not opt.secret)

    def test_every_other_settings_field_is_a_known_non_option(self):
        others = {f.name for f in fields(Settings) if "option" not in f.metadata}
        self.assertEqual(others, NOT_OPTIONS)

    def test_a_default_given_on_the_command_line_reads_as_the_default(self):
        # Each default, written out as a user would, parses back to itself: the table's
        # default is a value its own parser accepts (a default no one could type is a bug).
        for opt in OPTIONS:
            if isinstance(opt.default, (tuple, type(None))):
                continue  # "" means the empty tuple / the server's default; checked below
            text = str(int(opt.default)) if isinstance(opt.default, bool) else str(opt.default)
            with self.subTest(option=opt.name):
                self.assertEqual(opt.parse(text), opt.default)
        self.assertEqual(BY_NAME["transfer_targets"].parse(""), ())
        self.assertIsNone(BY_NAME["llm_temperature"].parse(""))


class NarrowerSettingsTests(SynchronousTestCase):
    def test_narrower_settings_default_to_their_options(self):
        for (cls, name), (option, convert) in NARROWER.items():
            with self.subTest(cls=cls.__name__, field=name):
                self.assertEqual(getattr(cls(), name), convert(BY_NAME[option].default))

    def test_narrower_settings_refer_to_the_table_rather_than_copy_it(self):
        for cls in {cls for cls, _ in NARROWER}:
            written = dict(defaults_in(ast.parse(textwrap.dedent(inspect.getsource(cls)))))
            for (owner, name), (option, _) in NARROWER.items():
                if owner is cls:
                    with self.subTest(cls=cls.__name__, field=name):
                        self.assertTrue(refers_to_option(written[name], option),
                                        f'{cls.__name__}.{name}: write default("{option}"), not a copy')

    def test_every_option_field_of_a_narrower_settings_is_mapped(self):
        # A new field named like an option on one of these classes belongs in NARROWER (the
        # phrases, "" as options, default to the English catalog: voiced.phrases is their source).
        for cls in {cls for cls, _ in NARROWER}:
            for f in fields(cls):
                if f.name in BY_NAME and not empty(BY_NAME[f.name].default):
                    self.assertTrue((cls, f.name) in NARROWER, f"add {cls.__name__}.{f.name} to NARROWER")

    def test_a_service_with_no_options_gives_its_calls_the_defaults(self):
        # The one place the narrower settings are built from Settings (VoicedService) gives
        # what their own defaults say: nothing between the table and a call changes a value.
        from twisted.internet.task import Clock

        from voiced.service import VoicedService

        service = VoicedService(Settings(), reactor=Clock())
        self.assertEqual(service.turn_settings, TurnSettings())
        self.assertEqual(service.turn_detection.barge_in.settings, BargeInSettings())
        end = service.turn_detection.end.settings
        self.assertEqual((end.hold_ms, end.model_threshold),
                         (Settings().turn_hold_ms, EndOfTurnSettings().model_threshold))
        self.assertEqual(ToolRunner.__init__.__defaults__[-1], Settings().tools_timeout_ms / 1000)

    def test_the_agent_factory_gives_the_llm_its_defaults(self):
        from twisted.internet.task import Clock

        from voiced.agent.factory import build_agent
        from voiced.phrases import english

        built = build_agent(Settings(agent="openai"), english(), None, Clock()).settings
        for (cls, name) in NARROWER:
            if cls is LLMSettings:
                self.assertEqual(getattr(built, name), getattr(LLMSettings(), name), name)


class NoSecondCopyTests(SynchronousTestCase):
    def test_no_parameter_or_field_named_like_an_option_copies_its_default(self):
        # Anywhere in voiced/: ``language: str = "en-US"`` or ``barge_in_ms=360`` is a second
        # copy of the table's default; ``default("language")`` is the one way to write it.
        copies = []
        for path in sorted(PACKAGE.rglob("*.py")):
            relative = path.relative_to(PACKAGE)
            if relative.parts[0] in OTHER_PROGRAMS or str(relative) in ("options.py", "config.py"):
                continue
            for name, expr in defaults_in(ast.parse(path.read_text(encoding="utf-8"))):
                opt = BY_NAME.get(name)
                if opt is None or empty(opt.default):
                    continue
                if literal(expr) == opt.default:
                    copies.append(f"voiced/{relative}:{expr.lineno} {name} = {opt.default!r}")
        self.assertEqual(copies, [], 'write default("name") (voiced.options) instead of the value')

    def test_the_scan_finds_a_copy(self):
        source = ("class A:\n    barge_in_ms: int = 360\n"
                  "def f(language: str = 'en-US', workers=default('workers')):\n    pass\n")
        found = {name: literal(expr) for name, expr in defaults_in(ast.parse(source))}
        self.assertEqual(found["barge_in_ms"], BY_NAME["barge_in_ms"].default)
        self.assertEqual(found["language"], BY_NAME["language"].default)
        self.assertIs(found["workers"], MISSING)
