"""The layers' "nevers" (README's Architecture): which package may not import which.

A call depends on the agent contract, not on the settings; an agent knows nothing of the
call machinery; a carrier knows nothing of the agents. Imports are read with ``ast``, so
a lazy import inside a function or under ``TYPE_CHECKING`` counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "voiced"

#: (folder, forbidden module prefix, allowed exceptions under it, why)
NEVERS = [
    ("call", "voiced.config", (), "the call takes its narrow TurnSettings, built from Settings by the service"),
    # The call drives a conversation through the agent contract (base.py) and splits replies
    # into sentences (sentences.py, pure); it never names an agent.
    ("call", "voiced.agent", ("voiced.agent.base", "voiced.agent.sentences"),
     "the call sees agents through their contract only"),
    ("agent", "voiced.call", (), "an agent knows nothing of the call machinery (voiced.transfer checks targets)"),
    ("carrier", "voiced.agent", (), "a carrier knows nothing of the agents (voiced.httpbody reads bodies)"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(source: str, package: str) -> list[tuple[int, str]]:
    """(line, dotted name) of everything ``source`` imports: ``import a.b`` gives ``a.b``,
    ``from a import b`` gives ``a.b`` (a module or a name in one, the same to a layer rule);
    relative imports are resolved against ``package``, the file's own package."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.extend((node.lineno, base if alias.name == "*" else f"{base}.{alias.name}") for alias in node.names)
    return sorted(found)


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def broken(names: list[tuple[int, str]], forbidden: str, allowed: tuple[str, ...]) -> list[tuple[int, str]]:
    return [(line, name) for line, name in names
            if under(name, forbidden) and not any(under(name, ok) for ok in allowed)]


def violations(folder: str, forbidden: str, allowed: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names = imported_names(path.read_text(encoding="utf-8"), package)
        found.extend(f"{path.relative_to(ROOT)}:{line} imports {name}"
                     for line, name in broken(names, forbidden, allowed))
    return found


class LayerTests(SynchronousTestCase):
    def test_the_nevers_hold(self):
        for folder, forbidden, allowed, why in NEVERS:
            with self.subTest(folder=folder, forbidden=forbidden):
                self.assertEqual(violations(folder, forbidden, allowed), [], f"voiced/{folder}/: {why}")

    def test_the_option_table_is_a_leaf(self):
        # The call, the agents and the turn policies take their defaults from voiced.options:
        # were it to import a layer, they would import that layer through it.
        names = [name for table in ("options.py", "option_parsers.py")  # the table and its parsers
                 for name in imported_names((PACKAGE / table).read_text(encoding="utf-8"), "voiced")]
        # Two pure leaves of their own: a transfer target's check, a dialled number's check.
        self.assertEqual({name for _, name in names
                          if under(name, "voiced") and not under(name, "voiced.option_parsers")},
                         {"voiced.transfer.check_transfer_target", "voiced.outbound.request.check_number"})

    def test_the_checker_sees_every_form_of_import(self):
        # The nevers are only as good as the import reader: each form, lazy or not, is seen.
        source = (
            "import voiced.config\n"
            "from voiced import config as settings\n"
            "from voiced.agent.llm import OpenAIAgent\n"
            "from voiced.agent import base, factory\n"
            "def later():\n"
            "    from ...call import control\n"
            "from . import sibling\n"
        )
        names = imported_names(source, "voiced.carrier.twilio")
        self.assertEqual(names, [(1, "voiced.config"), (2, "voiced.config"), (3, "voiced.agent.llm.OpenAIAgent"),
                                 (4, "voiced.agent.base"), (4, "voiced.agent.factory"),
                                 (6, "voiced.call.control"), (7, "voiced.carrier.twilio.sibling")])
        self.assertEqual(broken(names, "voiced.agent", ("voiced.agent.base",)),
                         [(3, "voiced.agent.llm.OpenAIAgent"), (4, "voiced.agent.factory")])
        self.assertEqual([line for line, _ in broken(names, "voiced.config", ())], [1, 2])
        self.assertEqual(broken(names, "voiced.call", ()), [(6, "voiced.call.control")])

    def test_shared_pieces_live_outside_both_layers(self):
        from voiced import httpbody, transfer
        from voiced.call import control

        self.assertEqual(transfer.check_transfer_target("+14155550100"), "+14155550100")
        self.assertRaises(ValueError, transfer.check_transfer_target, "<Dial>")
        # The carriers' contract names the same check, not a copy of it.
        self.assertIs(control.check_transfer_target, transfer.check_transfer_target)
        self.assertTrue(callable(httpbody.read_body))


TESTS = ROOT / "tests"


def is_test_module(name: str) -> bool:
    """``tests.test_x`` or ``tests.e2e.test_x`` (or a name in one): a module trial and pytest
    run, which shares nothing; what tests share lives in tests/testing/, tests/fakes/ and
    tests/e2e/daemon.py."""
    parts = name.split(".")
    if parts[0] != "tests" or len(parts) < 2:
        return False
    if parts[1] == "e2e":
        return len(parts) > 2 and parts[2].startswith("test_")
    return parts[1].startswith("test_")


def imports_of_test_modules() -> list[str]:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        module = module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names = imported_names(path.read_text(encoding="utf-8"), package)
        found.extend(f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in names if is_test_module(name))
    return found


class SharedDoublesTests(SynchronousTestCase):
    def test_no_test_module_imports_another(self):
        # A double shared through a test module drags that module's tests into the importer
        # (trial collects the TestCases it finds) and hides where the double lives.
        self.assertEqual(imports_of_test_modules(), [],
                         "move what is shared into tests/testing/<area>.py (or tests/e2e/daemon.py)")

    def test_the_check_sees_test_modules_only(self):
        self.assertEqual([n for n in ("tests.test_turn.FakeSTT", "tests.test_turn", "tests.e2e.test_calls.line",
                                      "tests.testing.turn.FakeSTT", "tests.e2e.daemon.line", "tests.turn_harness.Line",
                                      "tests.fakes.twilio_rest.FakeTwilio", "tests", "voiced.test_x")
                          if is_test_module(n)],
                         ["tests.test_turn.FakeSTT", "tests.test_turn", "tests.e2e.test_calls.line"])
        # ``from tests import test_turn`` and a relative import inside tests/e2e are both seen.
        names = imported_names("from tests import test_turn\nfrom .test_calls import line\n", "tests.e2e")
        self.assertEqual([n for _, n in names if is_test_module(n)], ["tests.test_turn", "tests.e2e.test_calls.line"])
