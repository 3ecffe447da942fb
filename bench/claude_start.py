"""One Claude Code start, alone: wall time to the first streamed event and the CPU it costs.

What ``bench/providers.py``'s cold rounds are made of. The real CLI (``tools/agent-clis``, ``make
agents``) is started through ``claude-agent-sdk``, as the sessions service starts it, with the
service's ``QUIET_ENV``, against the project's scripted model server, ``--rounds`` times one after
another. A sample is the time from starting the process to its first ``stream_event``; the CPU
is the CLI processes' user + system time (``getrusage(RUSAGE_CHILDREN)``) divided by the rounds.
``KEY=VALUE`` arguments are set in the CLI's environment, to see what a switch costs or saves;
each variant runs in a fresh process, alternating with the baseline, so both see the same
machine.

Run: ``.venv/bin/python bench/claude_start.py [--rounds 6] [KEY=VALUE ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "tools" / "agent-clis" / "node_modules" / ".bin" / "claude"
SCRIPT = {"rules": [{"match": {"any": True}, "reply": [{"text": "hello there", "chunk_chars": 5}]}]}


async def rounds(n: int, extra: dict[str, str], cwd: str) -> dict[str, float]:
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, StreamEvent  # noqa: PLC0415
    from orrery.modelserver import ScriptedModelServer  # noqa: PLC0415
    from orrery.sessions.agents.claude_code import QUIET_ENV  # noqa: PLC0415

    firsts: list[float] = []
    async with ScriptedModelServer(SCRIPT) as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "bench-key"}
        for _ in range(n):
            options = ClaudeAgentOptions(
                cli_path=CLI,
                cwd=cwd,
                env={**QUIET_ENV, **env, **extra},
                model="claude-sonnet-4-5",
                include_partial_messages=True,
                permission_mode="acceptEdits",
            )
            t0 = time.monotonic()
            client = ClaudeSDKClient(options)
            await client.connect()
            await client.query("hi")
            async for message in client.receive_response():
                if isinstance(message, StreamEvent):
                    firsts.append(time.monotonic() - t0)
                    break
            await client.disconnect()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "first_s": statistics.median(firsts),
        "cpu_s": (used.ru_utime + used.ru_stime) / n,
    }


def variant(n: int, extra: list[str]) -> dict[str, float]:
    """One set of rounds in a fresh process (its children's CPU is theirs alone)."""
    out = subprocess.run(
        [sys.executable, __file__, "--rounds", str(n), "--child", *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("env", nargs="*", help="KEY=VALUE set in the CLI's environment")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="orrery-bench-claude-") as cwd:
            subprocess.run(["git", "init", "-q", cwd], check=True)
            print(json.dumps(asyncio.run(rounds(args.rounds, extra, cwd))))
        return 0
    if not CLI.exists():
        print(f"error: Claude Code is not installed at {CLI}: run `make agents`")
        return 1
    variants = [("baseline", [])] + ([(" ".join(args.env), args.env)] if args.env else [])
    print(f"{args.rounds} Claude Code starts one after another, per variant, twice, alternating")
    print(f"{'variant':<40}{'first event':>14}{'CPU per start':>16}")
    for _ in range(2):
        for label, items in variants:
            got = variant(args.rounds, items)
            print(f"{label[:40]:<40}{got['first_s']:>13.2f}s{got['cpu_s']:>15.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
