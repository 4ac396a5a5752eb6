"""setup.py ships what the code reads, and pins what the code leans on.

``package_data`` is read from setup.py with ``ast`` (running it would call setup()): each
glob must match a file, and every data file in the package (the phrase catalogs, the
dialogs, the console's pages) must match a glob, or ``pip install .`` would leave it out
and the daemon would fail on its first call rather than at its first test.
"""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


def setup_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setup"]
    assert len(calls) == 1, "setup.py calls setup() once"
    return {k.arg: k.value for k in calls[0].keywords if k.arg}


def package_data() -> dict[str, list[str]]:
    return ast.literal_eval(setup_keywords()["package_data"])


def install_requires() -> list[Requirement]:
    return [Requirement(r) for r in ast.literal_eval(setup_keywords()["install_requires"])]


def data_files(package: str) -> list[Path]:
    """Every file under ``package`` that is not Python source (nor compiled from it)."""
    root = ROOT / package
    return sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix not in (".py", ".pyc"))


def resource_packages() -> set[str]:
    """The packages voiced reads files from: the argument of every ``files("voiced.x")``."""
    found = set()
    for path in (ROOT / "voiced").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "files" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return found


class PackageDataTests(SynchronousTestCase):
    def test_every_glob_matches_a_file(self):
        for package, globs in package_data().items():
            for glob in globs:
                with self.subTest(package=package, glob=glob):
                    self.assertTrue(list((ROOT / package).glob(glob)), f"{package}/{glob} matches nothing")

    def test_every_data_file_is_listed(self):
        globs = package_data()["voiced"]
        unlisted = [str(p.relative_to(ROOT)) for p in data_files("voiced")
                    if not any(p.match(str(ROOT / "voiced" / g)) for g in globs)]
        self.assertEqual(unlisted, [])

    def test_every_package_the_code_reads_files_from_ships_its_files(self):
        packages = resource_packages()
        # The phrase catalogs, the dialogs and the console's static files at least.
        self.assertTrue({"voiced.phrases", "voiced.agent", "voiced.console"} <= packages, packages)
        globs = package_data()["voiced"]
        for package in packages:
            folder = "/".join(package.split(".")[1:])
            with self.subTest(package=package):
                self.assertTrue(any(g.startswith(folder + "/") for g in globs), f"no package_data for {package}")
                self.assertTrue(data_files(package.replace(".", "/")), f"{package} has no data file to read")

    def test_the_twistd_plugin_ships(self):
        self.assertEqual(package_data()["twisted"], ["plugins/voiced_plugin.py"])
        self.assertTrue((ROOT / "twisted" / "plugins" / "voiced_plugin.py").is_file())


class PinTests(SynchronousTestCase):
    def test_autobahn_is_pinned_below_its_next_major(self):
        # voiced/carrier/websocket.py's fast path reads Autobahn's private frame state
        # (tests/test_websocket_fast_path.py checks it against Autobahn's own path).
        autobahn = next(r for r in install_requires() if r.name == "autobahn")
        uppers = [s for s in autobahn.specifier if s.operator == "<"]
        self.assertEqual(len(uppers), 1, "autobahn needs an upper bound")
        installed = version("autobahn")
        self.assertIn(installed, autobahn.specifier)
        self.assertTrue(uppers[0].version.isdigit(), "below a major version (a minor may change nothing private)")
