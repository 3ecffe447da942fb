"""The worktrees issue's acceptance, as a user runs it: `orrery up`, the `orrery` CLI and the REST
API against real NATS, PostgreSQL, git and HTTP servers started by environments."""

from __future__ import annotations

import concurrent.futures
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import GIT_ENV, free_port_block, git
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import orrery, start, stop, until, wait_healthy
else:
    from gitrepos import GIT_ENV, free_port_block, git
    from gitrepos import make_repo as make_test_repo
    from stackctl import orrery, start, stop, until, wait_healthy

pytestmark = pytest.mark.system

ORRERY_YML = """\
environment:
  start: "{python} -u -m http.server {{{{ worktree.ports[0] }}}} --bind 127.0.0.1"
  health: {{type: http, url: "http://127.0.0.1:{{{{ worktree.ports[0] }}}}/", interval_s: 0.5}}
  app_url: "http://127.0.0.1:{{{{ worktree.ports[0] }}}}/"
  logs: "echo logs of {{{{ worktree.name }}}}; ls"
copy: [.env]
"""


def make_repo(root: Path) -> Path:
    return make_test_repo(
        root / "shop",
        ORRERY_YML.format(python=sys.executable),
        {".gitignore": ".env\n*.log\n", "index.html": "<h1>shop</h1>\n"},
        {".env": "API_KEY=dev\n"},
    )


def free_base() -> int:
    return free_port_block(60, start=32_000)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_three_environments_archive_and_drift(tmp_path: Path) -> None:  # noqa: PLR0915 - one story
    source = make_repo(tmp_path / "src")
    base = free_base()
    proc, env = start(
        tmp_path / "home",
        extra={**GIT_ENV, "ORRERY_PORT_BASE": str(base), "ORRERY_RECONCILE_INTERVAL": "1"},
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{env['ORRERY_PORT']}", timeout=60)
    try:
        wait_healthy(proc, int(env["ORRERY_PORT"]), timeout=60)

        # A local repo, cloned; its .orrery.yml imported.
        out = ok(orrery(env, "repo", "add", str(source)))
        assert "added shop" in out and "imported .orrery.yml: an environment" in out
        # The clone is Orrery's; .env lives in the user's checkout, so put it in the clone too.
        shutil.copy(source / ".env", tmp_path / "home" / "repos" / "shop" / ".env")

        for name in ("alpha", "beta", "gamma"):
            out = ok(orrery(env, "worktree", "add", name, "--repo", "shop"))
            assert f"created shop/{name}" in out
        worktrees = {w["name"]: w for w in api.get("/api/worktrees").json()}
        assert sorted(w["unique_id"] for w in worktrees.values()) == [1, 2, 3]
        assert Path(worktrees["alpha"]["path"], ".env").read_text() == "API_KEY=dev\n"

        # Start the three at once: all healthy, each on its own block of ports.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            started = list(pool.map(lambda n: api.post(f"/api/worktrees/{n}/env/start"), worktrees))
        assert [r.status_code for r in started] == [200, 200, 200], [r.text for r in started]

        def all_healthy() -> list[dict[str, Any]] | None:
            rows = api.get("/api/worktrees").json()
            good = all(
                r["env"]["status"] == "running" and r["env"]["health"] == "healthy" for r in rows
            )
            return rows if good else None

        rows = until(all_healthy)
        ports = [r["ports"][0] for r in rows]
        assert len(set(ports)) == 3 and all(base <= p < base + 30 for p in ports)
        for row in rows:
            assert httpx.get(row["env"]["app_url"]).status_code == 200
            assert row["env"]["app_url"].endswith(f":{row['ports'][0]}/")

        # Logs through the API (and the CLI).
        logs = until(lambda: api.get("/api/worktrees/beta/env/logs").json()["lines"])
        assert any("Serving HTTP" in line for line in logs)
        assert "Serving HTTP" in ok(orrery(env, "env", "logs", "beta", "-n", "50"))
        ran = api.get("/api/worktrees/beta/env/logs", params={"source": "command"}).json()
        assert ran["lines"][0] == "logs of beta" and "index.html" in ran["lines"]
        assert ran["error"] is None

        # Bad input is a clear 4xx.
        assert api.post("/api/worktrees/alpha/env/start").status_code == 409
        bad = api.post("/api/worktrees", json={"repo": "shop", "name": "../escape"})
        assert bad.status_code == 422 and bad.json()["code"] == "worktree.invalid_name"
        unknown = api.post("/api/worktrees", json={"repo": "nope", "name": "x"})
        assert unknown.status_code == 404 and unknown.json()["code"] == "repo.not_found"
        slug = api.post("/api/repos", json={"source": str(source), "slug": "../../etc"})
        assert slug.status_code == 422 and slug.json()["code"] == "repo.invalid_slug"
        cli_error = orrery(env, "worktree", "add", "Bad Name", "--repo", "shop")
        assert cli_error.returncode == 2 and "worktree.invalid_name" in cli_error.stdout

        # Stop all three.
        for name in worktrees:
            assert "stopped" in ok(orrery(env, "env", "stop", name))
        for port in ports:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)

        # Ports taken by another process: a clear 409 at start.
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", worktrees["gamma"]["ports"][3]))
            squatter.listen()
            taken = api.post("/api/worktrees/gamma/env/start")
        assert taken.status_code == 409 and taken.json()["code"] == "env.ports_taken"
        assert str(worktrees["gamma"]["ports"][3]) in taken.json()["message"]

        # Archive one with clean: ports released, ignored files removed, tracked ones kept.
        out = ok(orrery(env, "worktree", "archive", "alpha", "--filesystem", "cleaned"))
        assert "archived shop/alpha (cleaned" in out
        alpha = api.get(f"/api/worktrees/{worktrees['alpha']['id']}").json()
        assert alpha["status"] == "archived" and alpha["ports"] == []
        assert not Path(alpha["path"], ".env").exists()
        assert Path(alpha["path"], "index.html").exists()

        # Deleted by hand outside Orrery: shown as drift, and it can still be removed.
        shutil.rmtree(worktrees["beta"]["path"])
        until(lambda: "missing on disk" in ok(orrery(env, "worktree", "list")))
        assert api.get("/api/worktrees/beta").json()["missing"] is True
        assert "deleted shop/beta" in ok(orrery(env, "worktree", "rm", "beta"))
        names = {w["name"] for w in api.get("/api/worktrees", params={"archived": True}).json()}
        assert names == {"alpha", "gamma"}

        # A worktree made outside Orrery is drift too.
        outside = tmp_path / "outside"
        git(
            tmp_path / "home" / "repos" / "shop", "worktree", "add", "-q", "-b", "hot", str(outside)
        )
        until(lambda: "1 outside Orrery" in ok(orrery(env, "repo", "list")))
    finally:
        api.close()
        stop(proc)
