"""`make types`: write every artefact generated from the event contract.

- docs/events.md           the event catalogue (subjects, streams, every event and command)
- docs/events.schema.json  JSON Schema of every body (web/src/gen/events.ts is made from it)
- deploy/nats/**.json      stream and consumer definitions for the `nats` CLI

`--check` writes nothing and exits 1 if any file is stale (the contract tests run it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orrery.events import default_registry
from orrery.events.schema import json_schema, render_catalogue
from orrery.runtime.topology import export_definitions

ROOT = Path(__file__).resolve().parent.parent


def artefacts() -> dict[Path, str]:
    registry = default_registry()
    out = {
        ROOT / "docs" / "events.md": render_catalogue(registry),
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
