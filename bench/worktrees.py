"""Worktree creation: Orrery's worktrees service against a bare ``git worktree add``, same run.

One ratio, ``create_ratio = orrery_median / bare_median`` (1.0 = nothing lost to Orrery; lower
is better, target at most 1.30):

* **Orrery**: the worktrees service runs in this process (``run_service`` with its own NATS and
  PostgreSQL, as ``orrery up`` runs it), with a repo adopted in place. A sample is
  ``CommandClient.send(CreateWorktree(...), until=<WorktreeCreated or WorktreeCreationFailed>)``
  timed from the send to the outcome event: the command through JetStream, the decider, the
  reactor's git work (``Git.add_worktree``: its checks, the worktree list, ``git worktree add``
  and the list again; no fetch, as the repo has no origin), the completion recorded and the
  ``WorktreeCreated`` event back to the client.
* **bare**: ``git worktree add -b b-<i> <path> main`` as an awaited subprocess against a second
  repo with the same content and the same commit.

Both repos hold a small, realistic tree (200 text files in a few directories, one commit). Every
git process (the service's too) runs with the same identity and without user or system config.

Fairness: one process, sequential creates (never concurrent), the same file system. Sides run in
turn every round, rotating who goes first, so a noisy neighbour on a small shared machine hits
both alike; medians are reported. A missed target warns; only errors exit non-zero.

Run: ``.venv/bin/python bench/worktrees.py [--quick] [--rounds R] [--creates N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nats.js import JetStreamContext
from orrery.events import Envelope, Event, default_registry, subjects
from orrery.events.worktrees import (
    AddRepo,
    CreateWorktree,
    RepoAdded,
    RepoAddFailed,
    WorktreeCreated,
    WorktreeCreationFailed,
)
from orrery.runtime import bus, topology
from orrery.runtime.clock import UUID7
from orrery.runtime.commands.client import CommandClient
from orrery.runtime.infra import NatsServer, PostgresServer
from orrery.runtime.service import run_service
from orrery.runtime.settings import load
from orrery.worktrees.main import spec

TARGET = 1.30  # orrery / bare: at most
DIRS = ("src/app", "src/lib", "tests", "docs", "web/components")
DEFAULT_FILES = 200
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}
ids = UUID7()

Side = Callable[[int], Awaitable[list[float]]]  # round -> seconds of each create
Times = dict[str, list[list[float]]]  # side -> per round, the seconds of each create


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path: Path, files: int) -> Path:
    """200 text files (1-4 KB) in a few directories, one commit on ``main``; the same bytes
    and the same commit id every time."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for n in range(files):
        folder = path / DIRS[n % len(DIRS)]
        folder.mkdir(parents=True, exist_ok=True)
        lines = 30 + (n * 37) % 90
        body = "".join(f"def f{n}_{k}(x):  # line {k} of file {n}\n" for k in range(lines))
        (folder / f"module_{n:03d}.py").write_text(body)
    (path / "README.md").write_text("# bench\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "init")
    return path


async def wait_for_topology(js: JetStreamContext) -> None:
    """Until the service has made the worktrees streams and its two durable consumers."""
    async with asyncio.timeout(30):
        while True:
            try:
                await js.consumer_info(
                    subjects.command_stream("worktrees"),
                    topology.command_consumer_name("worktrees"),
                )
                await js.consumer_info(
                    subjects.event_stream("worktrees"),
                    topology.reactor_consumer_name("worktrees"),
                )
                return
            except Exception:  # noqa: BLE001 - not there yet (or not reachable yet): poll
                await asyncio.sleep(0.05)


def outcome(types: tuple[type[Event], ...]) -> Callable[[Envelope[Event]], bool]:
    return lambda env: isinstance(env.event, types)


async def add_repo(client: CommandClient, source: Path) -> str:
    repo_id = ids.new()
    sent = await client.send(
        AddRepo(command_id=ids.new(), repo_id=repo_id, slug="app", source=str(source), adopt=True),
        until=outcome((RepoAdded, RepoAddFailed)),
        timeout=60,
    )
    if not isinstance(sent.events[-1].event, RepoAdded):
        raise RuntimeError(f"AddRepo failed: {sent.events[-1].event}")
    return repo_id


async def create_orrery(client: CommandClient, repo_id: str, name: str) -> float:
    command = CreateWorktree(
        command_id=ids.new(), worktree_id=ids.new(), repo_id=repo_id, name=name
    )
    began = time.perf_counter()
    sent = await client.send(
        command, until=outcome((WorktreeCreated, WorktreeCreationFailed)), timeout=60
    )
    elapsed = time.perf_counter() - began
    if not isinstance(sent.events[-1].event, WorktreeCreated):
        raise RuntimeError(f"CreateWorktree {name} failed: {sent.events[-1].event}")
    return elapsed


async def create_bare(repo: Path, path: Path, branch: str) -> float:
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "git",
        "worktree",
        "add",
        "-b",
        branch,
        str(path),
        "main",
        cwd=repo,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"git worktree add {path} failed: {err.decode().strip()}")
    return elapsed


async def alternate(rounds: int, sides: dict[str, Side]) -> Times:
    """Run every side once per round, rotating who goes first."""
    names = list(sides)
    times: Times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            times[name].append(await sides[name](r))
    return times


async def bench(rounds: int, creates: int, root: Path, files: int = DEFAULT_FILES) -> Times:
    orrery_repo = make_repo(root / "repos" / "orrery", files)
    bare_repo = make_repo(root / "repos" / "bare", files)
    bare_trees = root / "bare-worktrees"
    settings = load()  # ORRERY_HOME and ORRERY_RECONCILE_INTERVAL are set by main()
    async with NatsServer(root / "nats") as ns, PostgresServer(root / "pg") as pg:
        stop = asyncio.Event()
        service = asyncio.create_task(run_service(spec(settings), ns.url, pg.url, stop))
        nc = await bus.connect(ns.url, "orrery-bench")
        client = CommandClient(nc, nc.jetstream(), default_registry())
        try:
            await wait_for_topology(nc.jetstream())
            repo_id = await add_repo(client, orrery_repo)
            # Warm-up, not timed: the client's event consumer, the service's caches, git's.
            await create_orrery(client, repo_id, "o-warm")
            await create_bare(bare_repo, bare_trees / "b-warm", "b-warm")

            async def orrery_side(r: int) -> list[float]:
                return [
                    await create_orrery(client, repo_id, f"o-{r * creates + i}")
                    for i in range(creates)
                ]

            async def bare_side(r: int) -> list[float]:
                names = [f"b-{r * creates + i}" for i in range(creates)]
                return [await create_bare(bare_repo, bare_trees / n, n) for n in names]

            print(f"{creates} creates per side per round, {rounds} rounds, {files} files per tree")
            times = await alternate(rounds, {"orrery": orrery_side, "bare": bare_side})
        finally:
            await client.close()
            await nc.close()
            stop.set()
            await asyncio.wait_for(service, 30)
    return times


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[8]


def report(times: Times) -> str:
    """Print the table and the runs; returns the RESULT line."""
    flat = {side: [x for run in runs for x in run] for side, runs in times.items()}
    med = {side: statistics.median(xs) for side, xs in flat.items()}
    ratio = med["orrery"] / med["bare"]
    print(f"\n{'':<8}{'p50 ms':>9}{'p90 ms':>9}{'min ms':>9}{'max ms':>9}{'creates':>9}")
    for side, xs in flat.items():
        print(
            f"{side:<8}{med[side] * 1e3:>9.1f}{p90(xs) * 1e3:>9.1f}{min(xs) * 1e3:>9.1f}"
            f"{max(xs) * 1e3:>9.1f}{len(xs):>9}"
        )
    flag = "ok" if ratio <= TARGET else "ABOVE TARGET"
    print(f"\ncreate_ratio = orrery_median / bare_median = {ratio:.2f}", end="")
    print(f"  target <= {TARGET:.2f}  {flag}")
    print("runs (median ms of each round, in order):")
    for side, runs in times.items():
        print(f"  {side:<8}" + " ".join(f"{statistics.median(run) * 1e3:>8.1f}" for run in runs))
    if ratio > TARGET:
        print(f"warning: create ratio {ratio:.2f} is above target {TARGET:.2f}")
    return (
        f"RESULT create_ratio={ratio:.2f} orrery_p50_ms={med['orrery'] * 1e3:.1f}"
        f" bare_p50_ms={med['bare'] * 1e3:.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--creates", type=int, default=10, help="creates per side per round")
    parser.add_argument("--quick", action="store_true", help="CI size: 3 rounds of 5 creates")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side")
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help="files in the repo's tree")
    args = parser.parse_args()
    rounds, creates = (3, 5) if args.quick else (args.rounds, args.creates)
    if rounds < 1 or creates < 1 or args.files < 1:
        parser.error("--creates, --rounds and --files must be positive")
    with tempfile.TemporaryDirectory(prefix="orrery-bench-") as tmp:
        root = Path(tmp)
        # Before load() and spec() read them; git's variables reach the service's git too.
        os.environ.update(GIT_ENV)
        os.environ["ORRERY_HOME"] = str(root / "home")
        os.environ["ORRERY_RECONCILE_INTERVAL"] = "3600"
        times = asyncio.run(bench(rounds, creates, root, args.files))
    print(report(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
