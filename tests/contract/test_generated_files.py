"""The catalogue, JSON Schema and NATS definitions in the repo are what the code generates."""

from __future__ import annotations

import runpy
from pathlib import Path


def test_generated_files_are_current(repo_root: Path) -> None:
    gen = runpy.run_path(str(repo_root / "scripts" / "gen_types.py"))
    stale = [
        str(path.relative_to(repo_root))
        for path, text in gen["artefacts"]().items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], f"run `make types`: {stale}"
