"""The README and the command line's help stay current and the repository speaks for itself."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from service.cli.parser import build_parser
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Words that point outside the repository (a specification, a sibling folder, an earlier codebase).
FOREIGN = re.compile(r"\bSPEC\b|§|\.\./shared|\b[Tt]he seeds?\b|\b[Ss]eed's\b|\bseeded\b|\b[Ss]eeding\b")


def _own_texts() -> list[Path]:
    files = [ROOT / name for name in ("README.md", "BENCHMARKS.md", "RELIABILITY.md", "Makefile", "bench/README.md", ".ci/run")]
    files += sorted((ROOT / "service").rglob("*.py")) + sorted((ROOT / "bench").glob("*.py"))
    files += [path for path in sorted((ROOT / "tests").rglob("*.py")) if path != Path(__file__).resolve()]
    return files


def test_the_repository_says_things_in_its_own_words() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in _own_texts()
        for line in path.read_text(encoding="utf-8").splitlines()
        if FOREIGN.search(line)
    ]
    assert not found, found


def test_every_setting_is_documented() -> None:
    table = README[README.index("## Configuration") : README.index("## HTTP API")]
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in table]
    assert not missing


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += _commands(sub, (*prefix, name))
    return found


def test_every_command_is_in_the_readme_and_has_help() -> None:
    parser = build_parser()
    for command in _commands(parser):
        if len(command) == 1:
            assert re.search(rf"`{command[0]}\b", README), command
        else:
            assert re.search(rf"{command[0]} [a-z|]*\b{command[1]}\b", README), command
    help_text = parser.format_help()
    assert "simulate" in help_text and "seed" not in help_text


def test_the_readme_names_the_simulate_command_as_it_runs() -> None:
    assert ".venv/bin/python -m service simulate" in README
    assert "python -m service simulate  " not in README.replace(".venv/bin/python -m service simulate", "")
