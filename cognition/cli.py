"""``asi-evolve cognition ...`` and ``asi-evolve report``: the cognition base from a shell.

Every command checks its whole input (the run directory, the file, every id) before it writes,
so a bad call changes nothing; errors are ``CognitionError`` (one line, exit 2 in
``engine.cli.main``). ``--json`` prints a JSON list of items (``id``, ``title``, ``status``,
``origin``, ..., and ``score`` for ``search``) for scripts. Reading commands open the run
database read-only and never load a model; ``add``, ``import`` and ``search`` embed text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cognition.importer import FORMAT_NAMES, load_file
from cognition.items import (
    ACTIVE,
    ORIGINS,
    PENDING,
    REJECTED,
    STATUSES,
    USER,
    CognitionError,
    Item,
    make_draft,
)
from engine.store.run_store import RunStore
from engine.text import command_help

if TYPE_CHECKING:
    from cognition.base import CognitionBase

# The base and its embedder (numpy) are imported by the commands that use them, not with
# this module: every ``asi-evolve`` command builds the parser that registers these.

R = "runs/circle_packing"  # the run directory of the examples
# name -> (description, examples): what each subcommand's --help says beyond its usage
HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "import": (
        "Import knowledge items from a file: YAML (an items: list or a bare list), JSONL "
        "(one item object per line) or Markdown (one item per '## Title' section). The whole "
        "file is checked before anything is written.",
        (
            f"asi-evolve cognition import {R} priors.yaml",
            f"asi-evolve cognition import {R} notes.md --status pending",
        ),
    ),
    "list": (
        "List the run's knowledge items, optionally only those of one status or origin.",
        (
            f"asi-evolve cognition list {R}",
            f"asi-evolve cognition list {R} --origin analyzer --json",
        ),
    ),
    "pending": (
        "List the items waiting for a person's approval (the Analyzer's proposals and "
        "flagged near-duplicates); approve or reject them by id.",
        (f"asi-evolve cognition pending {R}",),
    ),
    "add": (
        "Add one item by hand. It is active (retrievable) at once unless --status pending, "
        "or flagged pending when it nearly duplicates an existing item.",
        (
            f'asi-evolve cognition add {R} --title "Use SLSQP" \\\n'
            '      --content "Optimize centers and radii jointly" --tags optimization',
        ),
    ),
    "show": (
        "Show one item in full, with the nodes that retrieved it and their scores.",
        (f"asi-evolve cognition show {R} 3",),
    ),
    "search": (
        "What retrieval would return for a query text, with cosine scores: a dry run of the "
        "knowledge a round would see. Writes nothing.",
        (f'asi-evolve cognition search {R} "non-overlap constraints" --top-k 3',),
    ),
    "remove": (
        "Delete items; their retrieval records stay, so past provenance remains readable.",
        (f"asi-evolve cognition remove {R} 4 7",),
    ),
    "approve": (
        "Make pending items active: the next retrieval can return them.",
        (f"asi-evolve cognition approve {R} 12 13",),
    ),
    "reject": (
        "Reject items: they are kept, never retrieved.",
        (f"asi-evolve cognition reject {R} 14",),
    ),
}


def register(sub: Any) -> None:
    """Add ``cognition`` (with its subcommands) and ``report`` to the top-level parser."""
    cog = sub.add_parser(
        "cognition",
        help="the cognition base of a run (knowledge items)",
        **command_help(
            "The knowledge the Researcher is shown each round, stored in the run database: "
            "import, list, add, show, search, and approve or reject the Analyzer's proposals. "
            "Every command checks all its input before it writes; bad input is one line and "
            "exit 2.",
            f"asi-evolve cognition list {R}",
            f"asi-evolve cognition pending {R}",
            f"asi-evolve cognition approve {R} 12",
        ),
    )
    csub = cog.add_subparsers(dest="cognition_command", required=True, parser_class=type(cog))

    def command(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        description, examples = HELP[name]
        parser = csub.add_parser(name, help=help_text, **command_help(description, *examples))
        parser.add_argument("run_dir", type=Path)
        parser.add_argument("--json", action="store_true", help="a JSON list of items")
        parser.set_defaults(func=func)
        return parser

    p = command("import", cmd_import, "import items from a YAML, JSONL or Markdown file")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=[*FORMAT_NAMES, "md", "yml"], help="default: by suffix")
    p.add_argument("--status", choices=[ACTIVE, PENDING], default=ACTIVE)
    p = command("list", cmd_list, "list items")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--origin", choices=ORIGINS)
    command("pending", cmd_pending, "items waiting for approval")
    p = command("add", cmd_add, "add one item")
    p.add_argument("--title", required=True)
    p.add_argument("--content", required=True)
    p.add_argument("--tags", default="", help="comma-separated")
    p.add_argument("--source", default="")
    p.add_argument("--status", choices=[ACTIVE, PENDING], default=ACTIVE)
    p = command("show", cmd_show, "one item in full, with its retrievals")
    p.add_argument("id", type=_item_id)
    p = command("search", cmd_search, "what retrieval would return for a query, with scores")
    p.add_argument("text")
    p.add_argument("--top-k", type=int, help="default: the run's cognition.top_k")
    p.add_argument("--threshold", type=float, help="default: the run's score_threshold")
    for name, func, text in (
        ("remove", cmd_remove, "delete items (their retrieval records stay)"),
        ("approve", cmd_approve, "make pending items active (retrievable)"),
        ("reject", cmd_reject, "reject items: never retrieved"),
    ):
        p = command(name, func, text)
        p.add_argument("ids", nargs="+", type=_item_id, metavar="ID")

    rep = sub.add_parser(
        "report",
        help="provenance report of a run (cognition use)",
        **command_help(
            "Split the run's designs into those credited to retrieved knowledge (cognition), "
            "to earlier nodes (experience) and novel ones, for all designs and the best 10%, "
            "with per-item retrieval counts and score deltas. Reads only.",
            f"asi-evolve report {R}",
            f"asi-evolve report {R} --json",
        ),
    )
    rep.add_argument("run_dir", type=Path)
    rep.add_argument("--json", action="store_true")
    rep.add_argument("--novel-threshold", type=float, help="default: cognition.novel_threshold")
    rep.set_defaults(func=cmd_report)


# ------------------------------------------------------------------ readers
def cmd_list(args: argparse.Namespace) -> int:
    with _Run(args.run_dir) as run:
        items = run.base.items(status=args.status, origin=args.origin)
    return _print_items(items, args.json)


def cmd_pending(args: argparse.Namespace) -> int:
    with _Run(args.run_dir) as run:
        items = run.base.items(status=PENDING)
    return _print_items(items, args.json)


def cmd_show(args: argparse.Namespace) -> int:
    with _Run(args.run_dir) as run:
        (item,) = run.base.check_ids([args.id])
        uses = [r for r in run.base.retrievals() if r["item_id"] == item.id]
    if args.json:
        print(json.dumps([{**item.to_json(), "retrievals": uses}], indent=2))
        return 0
    print(f"#{item.id}  {item.title}")
    print(f"status: {item.status}   origin: {item.origin}   tags: {', '.join(item.tags) or '-'}")
    if item.source:
        print(f"source: {item.source}")
    if item.duplicate_of is not None:
        print(
            f"flagged: near-duplicate of #{item.duplicate_of} (cosine {item.duplicate_score:.3f})"
        )
    nodes = ", ".join(f"#{r['node_id']} ({r['score']:.2f})" for r in uses[:20])
    print(f"retrieved by {len(uses)} node(s)" + (f": {nodes}" if uses else ""))
    print()
    print(item.content)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise CognitionError("search needs a non-empty query")
    if args.top_k is not None and args.top_k < 1:
        raise CognitionError(f"--top-k must be >= 1, got {args.top_k}")
    with _Run(args.run_dir) as run:
        s = run.base.settings
        top_k = args.top_k or s.top_k
        threshold = s.score_threshold if args.threshold is None else args.threshold
        items = run.base.items(status=ACTIVE)
        found = run.base.search(run.base.encode([args.text])[0], top_k, threshold) if items else []
    return _print_items(found, args.json, scores=True)


def cmd_report(args: argparse.Namespace) -> int:
    from cognition.report import build_report, format_report

    with _Run(args.run_dir) as run:
        report = build_report(run.store, run.base, args.novel_threshold)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


# ------------------------------------------------------------------ writers
def cmd_import(args: argparse.Namespace) -> int:
    drafts = load_file(args.file, args.format)
    with _Run(args.run_dir, write=True) as run:
        items = run.writer().add_texts(drafts, USER, args.status)
    return _print_changed(items, args.json, f"imported {len(items)} item(s)")


def cmd_add(args: argparse.Namespace) -> int:
    raw = {"title": args.title, "content": args.content, "tags": args.tags, "source": args.source}
    draft = make_draft(raw, "add")
    with _Run(args.run_dir, write=True) as run:
        items = run.writer().add_texts([draft], USER, args.status)
    return _print_changed(items, args.json, "added")


def cmd_remove(args: argparse.Namespace) -> int:
    with _Run(args.run_dir, write=True) as run:
        run.base.check_ids(args.ids)
        items = run.writer().remove(args.ids)
    return _print_changed(items, args.json, "removed")


def cmd_approve(args: argparse.Namespace) -> int:
    return _set_status(args, ACTIVE, "approved")


def cmd_reject(args: argparse.Namespace) -> int:
    return _set_status(args, REJECTED, "rejected")


def _set_status(args: argparse.Namespace, status: str, verb: str) -> int:
    with _Run(args.run_dir, write=True) as run:
        run.base.check_ids(args.ids)
        items = run.writer().set_status(args.ids, status)
    return _print_changed(items, args.json, verb)


# ------------------------------------------------------------------ helpers
class _Run:
    """An opened run: read-only unless the command writes (after its checks)."""

    def __init__(self, run_dir: Path, write: bool = False) -> None:
        from cognition.base import CognitionBase
        from cognition.settings import cognition_settings

        self.store = RunStore.open(run_dir, readonly=not write)
        try:
            settings = cognition_settings((self.store.get_meta("config") or {}).get("cognition"))
        except CognitionError:
            self.store.close()
            raise
        self.base = CognitionBase(self.store.db, settings, writable=False)

    def writer(self) -> CognitionBase:
        """The same base, allowed to write (creates the cognition tables if missing)."""
        from cognition.base import CognitionBase

        return CognitionBase(self.store.db, self.base.settings, self.base._embedder)

    def __enter__(self) -> _Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _item_id(text: str) -> int:
    try:
        value = int(text.lstrip("#"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an item id: {text!r}") from None
    if not 1 <= value < 2**63:  # SQLite integers are 64-bit
        raise argparse.ArgumentTypeError(f"not an item id: {text[:40]!r}")
    return value


def _print_items(items: list[Item], as_json: bool, scores: bool = False) -> int:
    if as_json:
        print(json.dumps([item.to_json() for item in items], indent=2))
        return 0
    if not items:
        print("(no items)")
    for item in items:
        score = f"{item.score:6.3f}  " if scores and item.score is not None else ""
        flag = f"  [near-duplicate of #{item.duplicate_of}]" if item.duplicate_of else ""
        print(f"#{item.id:<4} {score}{item.status:<8} {item.origin:<8} {item.title}{flag}")
    return 0


def _print_changed(items: list[Item], as_json: bool, verb: str) -> int:
    if as_json:
        return _print_items(items, True)
    flagged = [i for i in items if i.duplicate_of is not None]
    print(f"{verb}: " + ", ".join(f"#{i.id}" for i in items))
    for item in flagged:
        print(
            f"#{item.id} is a near-duplicate of #{item.duplicate_of} "
            f"(cosine {item.duplicate_score:.3f}): kept pending; approve it to use it anyway"
        )
    return 0
