"""`make types`: write every artefact generated from the event contract.

- docs/events.md           the event catalogue (subjects, streams, every event and command),
                           with the hand-written "Subscribing" section below near its top
- docs/events.schema.json  JSON Schema of every body (web/src/gen/events.ts is made from it)
- deploy/nats/**.json      stream and consumer definitions for the `nats` CLI

`--check` writes nothing and exits 1 if any file is stale (the contract tests run it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orrery.events import Registry, default_registry, subjects
from orrery.events.schema import json_schema, render_catalogue
from orrery.runtime.topology import export_definitions

ROOT = Path(__file__).resolve().parent.parent


def _one(ctx: str, kind: str, placeholder: str) -> str:
    """``canvas.evt.board.<board_id>``: one aggregate's subject, spelled by ``subjects``."""
    return "`" + subjects.event_subjects(ctx, kind)[:-1] + placeholder + "`"


def subscribing() -> list[str]:
    """For tools that follow the log: written here, not generated from the classes."""
    streams = ", ".join(f"`{subjects.event_stream(c)}`" for c in subjects.CONTEXTS)
    return [
        "## Subscribing",
        "",
        "<!-- This section is written by hand in scripts/gen_types.py. -->",
        "",
        "Each context's events are one JetStream stream, durable and replayable:",
        f"{streams}.",
        "Events are stored on file and never deleted, purged or rewritten, so a reader can start",
        "from sequence 1 at any time, or from where it stopped. Read the `<ctx>.evt.…` subjects",
        "only: `<ctx>.cmd.…` are work queues the services consume.",
        "",
        "- **To watch:** `orrery events tail` follows new events of every context, one line",
        "  each; `--board <slug>`, `--session <id>`, `--worktree <name>`, `--context <ctx>` narrow",
        "  it, `--type canvas.CardMoved` (repeatable, `*` matches) filters by tag, `--last N` or",
        "  `--from-start` replay stored events first, and `--json` prints one object per line",
        "  (`seq`, `stream`, `subject`, `type`, `version`, `id`, `occurred_at`, `actor`, and the",
        "  `event` body, upcast to its current version). It reads NATS directly, through ordered",
        "  consumers that leave nothing behind.",
        "- **From a tool:** a durable consumer (a named pull consumer, which resumes where it",
        "  stopped) on the subjects below; acknowledge each event once it is handled.",
        "  [`examples/subscribe.py`](examples/subscribe.py) does this with nats-py alone.",
        "",
        "| to follow | subjects |",
        "|---|---|",
        "| a board: zones, cards, notes, comments, triggers | "
        f"{_one('canvas', 'board', '<board_id>')} |",
        "| a session: tasks, messages, permissions, usage | "
        f"{_one('sessions', 'session', '<session_id>')} |",
        "| a worktree: its environment, its git state, its lifecycle | "
        f"{_one('worktrees', 'env', '<worktree_id>')}, "
        f"{_one('worktrees', 'gitstate', '<worktree_id>')}, and "
        f"`{subjects.event_subjects('worktrees', 'registry')}` (one subject for every repo and "
        "worktree: keep the bodies whose `worktree_id` is this one) |",
        f"| every board, every session | `{subjects.event_subjects('canvas', 'board')}`, "
        f"`{subjects.event_subjects('sessions', 'session')}` |",
        "| a whole context, rejected commands included | `<ctx>.evt.>` |",
        "",
        "- **At least once:** a durable consumer delivers an event again when its",
        "  acknowledgement is lost or late, so make the handling idempotent: `Nats-Msg-Id` is the",
        "  event's id, unique and stable. The stream sequence orders the events of one stream (and",
        "  so of each aggregate); across streams, `Orrery-Correlation-Id` and",
        "  `Orrery-Causation-Id` link an event to the command and events that led to it.",
        "- **Versions:** `Orrery-Version` is the version of the body's shape the event was",
        "  written with. A shape that changes gets a new version and an upcaster, and Orrery's own",
        "  readers (`orrery events tail` too) upcast old bodies as they read them; a tool reading",
        "  the JSON itself compares `Orrery-Version` with the version in the tables below. A new",
        "  optional field needs no new version, so ignore fields you do not know, and skip types",
        "  you do not know (a newer writer's).",
        "- **Schemas:** every body's JSON Schema is in [`events.schema.json`](events.schema.json).",
        "",
    ]


def catalogue(registry: Registry) -> str:
    """The generated catalogue, with "Subscribing" after its introduction."""
    text = render_catalogue(registry)
    intro, sep, rest = text.partition("\n## ")
    assert sep, "the catalogue has no sections"
    return intro + "\n" + "\n".join(subscribing()) + "\n## " + rest


def artefacts() -> dict[Path, str]:
    registry = default_registry()
    out = {
        ROOT / "docs" / "events.md": catalogue(registry),
        ROOT / "docs" / "events.schema.json": json.dumps(json_schema(registry), indent=2) + "\n",
    }
    for name, body in export_definitions().items():
        out[ROOT / "deploy" / "nats" / name] = body + "\n"
    return out


def main(argv: list[str]) -> int:
    stale = []
    for path, text in artefacts().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(ROOT))
        if "--check" not in argv:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if "--check" in argv and stale:
        print("stale generated files (run `make types`):", *map(str, stale), sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
