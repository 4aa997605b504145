"""Every subcommand's ``--help`` says what it does and shows how it is called (issue 21)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from engine.cli import build_parser

# Every command a person can type; a new one must be added here and get a --help of its own.
EXPECTED = {
    "run",
    "check-llm",
    "status",
    "best",
    "tasks",
    "stop",
    "pause",
    "resume",
    "watch",
    "backup",
    "restore",
    "export",
    "report",
    "cognition",
    *(
        f"cognition {name}"
        for name in (
            "import",
            "list",
            "pending",
            "add",
            "show",
            "search",
            "remove",
            "approve",
            "reject",
        )
    ),
}


def _subparsers(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) of every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                path = f"{prefix}{name}"
                yield path, child
                yield from _subparsers(child, f"{path} ")


def test_every_subcommand_has_a_description_and_an_example() -> None:
    found = dict(_subparsers(build_parser()))
    assert set(found) >= EXPECTED, sorted(EXPECTED - set(found))
    for path, parser in found.items():
        text = parser.format_help()
        assert parser.description and parser.description.strip(), f"{path}: no description"
        assert "example" in (parser.epilog or ""), f"{path}: no example in --help"
        assert f"asi-evolve {path.split()[0]}" in parser.epilog, f"{path}: example not runnable"
        assert isinstance(parser.formatter_class, type)
        assert issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter), path
        own = f"{parser.description}\n{parser.epilog}".splitlines()
        assert max(map(len, own)) <= 100, f"{path}: a help line over 100 characters"
        assert "examples:" in text, path


def test_run_help_says_what_steps_counts_and_that_a_rerun_resumes() -> None:
    run = dict(_subparsers(build_parser()))["run"]
    text = " ".join(run.format_help().split())
    assert "total number of evaluated candidates" in text
    assert "initial program" in text and "not counted" in text
    assert "resumes the run" in text and "larger --steps extends it" in text
