"""What the API commands share: the client, JSON and key/value output, short ids."""

from __future__ import annotations

import json
from typing import Any

import typer
from orrery.cli.api import Api
from orrery.runtime import settings as settings_mod
from rich.console import Console
from rich.table import Table

console = Console()
JsonOpt = typer.Option(False, "--json", help="print the API's JSON")


def api() -> Api:
    return Api(settings_mod.load())


def print_json(value: Any) -> None:
    console.print_json(json.dumps(value))


def kv(rows: list[tuple[str, Any]]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        if value not in (None, "", [], {}):
            table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    console.print(table)


def short_ids(ids: list[str]) -> dict[str, str]:
    """Each id's shortest prefix (8 characters at least) that no other id of the list shares.
    UUIDv7 ids made within a minute share their first 8 characters, so never just ``[:8]``."""
    out = {}
    for i in ids:
        n = 8
        while n < len(i) and any(o != i and o.startswith(i[:n]) for o in ids):
            n += 1
        out[i] = i[:n]
    return out
