"""What the agent-CLI tests share: the pinned CLIs (``make agents`` installs them into
tools/agent-clis), and one scripted-model script every CLI's scenario runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
AGENT_BIN = ROOT / "tools" / "agent-clis" / "node_modules" / ".bin"
EXAMPLE = ROOT / "libs" / "modelserver" / "examples" / "hello_world.yaml"


def installed(executable: str) -> Path:
    """The pinned CLI; a test that needs one that is missing fails with the reason, never skips."""
    cli = AGENT_BIN / executable
    assert cli.exists(), f"{executable} is not installed in {AGENT_BIN}: run `make agents`"
    return cli


def every_cli_script() -> dict[str, Any]:
    """The example script (each CLI's hello.txt rule), plus a slow answer to stop mid-run and a
    short answer to "say hello" (also when a transcript that mentions hello.txt comes first)."""
    rules: list[dict[str, Any]] = yaml.safe_load(EXAMPLE.read_text())["rules"]
    slow = {
        "match": {"last_user_regex": "tell a long story\\W*$"},  # not once answered
        "reply": [{"text": "once upon a time " * 100, "chunk_chars": 5, "delay_ms": 50}],
    }
    hello = {
        "match": {"last_user_regex": "say hello\\W*$"},
        "reply": [{"text": "Hello from the scripted model"}],
    }
    return {"rules": [slow, hello, *rules]}
