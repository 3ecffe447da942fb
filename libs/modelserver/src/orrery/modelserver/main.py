"""``orrery-model-server``: the scripted model server as a process, for demos and agent CLIs."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from orrery.modelserver.script import ScriptError
from orrery.modelserver.server import ScriptedModelServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orrery-model-server",
        description="Serve the Anthropic, OpenAI and Gemini APIs from a deterministic script.",
    )
    parser.add_argument(
        "--script",
        type=Path,
        help="rules file (.json, else YAML); default: one text reply to everything",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    return parser


def _ready(url: str) -> None:
    # One parseable line, so a parent process that passed --port 0 learns the port.
    sys.stdout.write(f"orrery-model-server listening on {url}\n")
    sys.stdout.flush()


def run(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        server = ScriptedModelServer(args.script, host=args.host, port=args.port)
    except ScriptError as exc:
        sys.exit(f"orrery-model-server: {exc}")
    try:
        asyncio.run(server.serve_forever(on_ready=_ready))
    except OSError as exc:
        sys.exit(f"orrery-model-server: cannot listen on {args.host}:{args.port}: {exc.strerror}")


if __name__ == "__main__":
    run()
