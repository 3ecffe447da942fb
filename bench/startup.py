"""`orrery up` start-up time and idle memory, against the floor of its own servers.

SPEC.md §4: healthy UI in under 5 s after install, and the embedded stack idle at most 1.5x
Agor's daemon (165 MB RSS, so 247 MB). Side by side in one run:

* **start**: `orrery up` from launch to the first green `/healthz` (an already initialised
  ORRERY_HOME, i.e. after install), against the floor of starting just nats-server and
  PostgreSQL from the same wheels (what any stack on these parts must pay). Rounds alternate.
* **idle memory**: the whole process tree of `orrery up` (Python, nats-server, every PostgreSQL
  process) 5 s after it turned healthy, as PSS (shared pages split between the processes that
  share them; RSS would count PostgreSQL's shared buffers once per backend). RSS is printed too.

Run: `.venv/bin/python bench/startup.py [--rounds N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from orrery.runtime.infra import NatsServer, PostgresServer, free_port

ORRERY = str(Path(sys.executable).parent / "orrery")
START_TARGET_S = 5.0
MEM_TARGET_MB = 1.5 * 165  # Agor measured by RSS, one process: PSS is the like for like


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(json.loads(resp.read()).get("status") == "ok")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def up_once(home: Path, measure_rss: bool) -> tuple[float, tuple[float, float] | None]:
    """Seconds to healthy, and the tree's idle (PSS, RSS) in MB if asked."""
    port = free_port()
    env = {
        **os.environ,
        "ORRERY_HOME": str(home),
        "ORRERY_PORT": str(port),
        "ORRERY_NATS_PORT": str(free_port()),
        "ORRERY_POSTGRES_PORT": str(free_port()),
    }
    began = time.perf_counter()
    proc = subprocess.Popen(
        [ORRERY, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not healthy(port):
            if proc.poll() is not None or time.perf_counter() - began > 60:
                raise RuntimeError("orrery up did not become healthy")
            time.sleep(0.02)
        elapsed = time.perf_counter() - began
        rss = None
        if measure_rss:
            time.sleep(5)
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            infos = [p.memory_full_info() for p in tree]
            rss = (sum(i.pss for i in infos) / 2**20, sum(i.rss for i in infos) / 2**20)
        return elapsed, rss
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


async def floor_once(root: Path) -> float:
    began = time.perf_counter()
    nats, pg = NatsServer(root / "nats"), PostgresServer(root / "pg")
    await nats.start()
    await pg.start()
    elapsed = time.perf_counter() - began
    await pg.stop()
    await nats.stop()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orrery-bench-") as tmp:
        root = Path(tmp)
        up_once(root / "home", measure_rss=False)  # initialise ORRERY_HOME: that is install
        asyncio.run(floor_once(root / "floor"))
        ups: list[float] = []
        floors: list[float] = []
        memory: list[tuple[float, float]] = []
        for r in range(args.rounds):
            order = ["up", "floor"] if r % 2 == 0 else ["floor", "up"]
            for side in order:
                if side == "up":
                    seconds, mb = up_once(root / "home", measure_rss=r == 0)
                    ups.append(seconds)
                    if mb is not None:
                        memory.append(mb)
                else:
                    floors.append(asyncio.run(floor_once(root / "floor")))
    up, floor = statistics.median(ups), statistics.median(floors)
    pss, rss = memory[0]
    runs = ", ".join(f"{x:.2f}" for x in ups)
    print(f"orrery up -> healthy    median {up:5.2f} s  (runs {runs}; target {START_TARGET_S} s)")
    print(f"nats + postgres alone   median {floor:5.2f} s  (the floor: servers only)")
    print(
        f"idle memory, all of it  {pss:5.0f} MB PSS, {rss:.0f} MB RSS (target {MEM_TARGET_MB:.0f})"
    )
    for label, ok in (("start", up < START_TARGET_S), ("idle memory", pss <= MEM_TARGET_MB)):
        if not ok:
            print(f"warning: {label} misses its target")
    print(
        f"RESULT start_s={up:.2f} floor_s={floor:.2f} idle_pss_mb={pss:.0f} idle_rss_mb={rss:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
