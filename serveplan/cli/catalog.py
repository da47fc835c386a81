"""`plan models`, `plan gpus`, `plan traffic`: list what the built-in catalog holds."""

from __future__ import annotations

import json
from collections.abc import Callable

from serveplan.cli.args import _Parser
from serveplan.cli.boundary import _console


def catalog_list(what: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        p = _Parser(prog=f"plan {what}", description=f"List the built-in {what} (serveplan/conf).")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        a = p.parse_args(argv)
        from serveplan.planner.report import catalog_rows

        header, rows = catalog_rows(what)
        if a.json:
            print(json.dumps([dict(zip(header, r)) for r in rows], indent=1))
            return 0
        from rich.table import Table

        t = Table(header_style="bold")
        for h in header:
            t.add_column(h)
        for r in rows:
            t.add_row(*map(str, r))
        _console().print(t)
        return 0

    return run
