"""Run ``asi-evolve`` (or a snippet) with an audit hook that reports any Python-level open of a
run database file (``evolve.db``, ``-wal``, ``-shm``, ``-journal``).

Why: closing *any* descriptor of the database drops every POSIX lock the process holds on
it, SQLite's included, and another process then resets the WAL under the live connection
(issue 19). SQLite's own opens happen in C and raise no audit event, so every event seen
here is a descriptor of ours. Usage::

    python tests/audit_db_opens.py REPORT cli ARGS...     # engine.cli.main(ARGS)
    python tests/audit_db_opens.py REPORT exec FILE       # run a Python file

Each offending open is appended to REPORT as one line: path, then the innermost frames.
"""

from __future__ import annotations

import os
import sys
import traceback

DB_FILES = ("evolve.db", "evolve.db-wal", "evolve.db-shm", "evolve.db-journal")


def _path(arg: object) -> str | None:
    if isinstance(arg, int):
        return None  # an fd number (os.fdopen): the open that made it was audited
    try:
        path = os.fsdecode(os.fspath(arg))  # type: ignore[arg-type]
    except TypeError:
        return None
    return path


def install(report: str) -> None:
    def hook(event: str, args: tuple) -> None:
        if event != "open" or not args:
            return
        path = _path(args[0])
        if path is None or os.path.basename(path) not in DB_FILES:
            return
        frames = traceback.extract_stack()[:-1][-6:]
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in frames[::-1])
        with open(report, "a", encoding="utf-8") as out:  # noqa: PTH123 - not a db file
            out.write(f"{path} via {where}\n")

    sys.addaudithook(hook)


def main() -> int:
    report, mode, *rest = sys.argv[1:]
    install(report)
    if mode == "cli":
        from engine.cli import main as cli_main

        return cli_main(rest)
    path = rest[0]
    sys.argv = rest
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    exec(code, {"__name__": "__main__", "__file__": path})  # noqa: S102 - the test's own file
    return 0


if __name__ == "__main__":
    sys.exit(main())
