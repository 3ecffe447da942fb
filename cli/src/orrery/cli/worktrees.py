"""``orrery repo``, ``orrery worktree`` and ``orrery env``: thin commands over the REST API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from orrery.cli.display import JsonOpt, api, console, short_ids
from orrery.cli.display import kv as _kv
from orrery.cli.display import print_json as _print_json
from rich.table import Table

repo_app = typer.Typer(help="Repositories: add (clone or adopt), list, reload config, remove.")
worktree_app = typer.Typer(help="Git worktrees: create, list, show, update, archive, remove.")
env_app = typer.Typer(help="A worktree's environment: start, stop, restart, status, logs.")


def _ports(ports: list[int]) -> str:
    return f"{ports[0]}-{ports[-1]}" if ports else "-"


# -- repos ---------------------------------------------------------------------------------------


@repo_app.command("add")
def repo_add(
    source: str = typer.Argument(help="URL (https, ssh, file://) or local path to clone"),
    slug: str | None = typer.Option(None, help="short name (default: from the URL)"),
    adopt: bool = typer.Option(False, help="use this existing local checkout in place"),
    as_json: bool = JsonOpt,
) -> None:
    """Add a repo: clone it into ORRERY_HOME/repos, or adopt a local checkout."""
    if adopt or Path(source).is_dir():
        source = str(Path(source).resolve()) if Path(source).exists() else source
    with console.status(f"{'adopting' if adopt else 'cloning'} {source} …"):
        repo = api().call(
            "POST", "/api/repos", json={"source": source, "slug": slug, "adopt": adopt}
        )
    if as_json:
        _print_json(repo)
        return
    console.print(f"[green]added[/] {repo['slug']}  {repo['id']}  {repo['path']}")
    console.print(f"default branch {repo['default_branch']}")
    if repo["config_error"]:
        console.print(f"[yellow]{repo['config_source']} not used:[/] {repo['config_error']}")
    elif repo["config_source"]:
        env = "an environment" if repo["environment"] else "no environment"
        console.print(
            f"imported {repo['config_source']}: {env}, copies {repo['copy'] or 'nothing'}"
        )


@repo_app.command("list")
def repo_list(
    include_removed: bool = typer.Option(False, "--all", help="also removed and failed repos"),
    as_json: bool = JsonOpt,
) -> None:
    """List repos."""
    repos = api().call("GET", "/api/repos", params={"all": include_removed})
    if as_json:
        _print_json(repos)
        return
    table = Table("id", "slug", "status", "branch", "path", "config", "drift")
    short = short_ids([r["id"] for r in repos])
    for r in repos:
        drift = f"{len(r['external_worktrees'])} outside Orrery" if r["external_worktrees"] else ""
        config = r["config_source"] + (" (error)" if r["config_error"] else "")
        table.add_row(
            short[r["id"]], r["slug"], r["status"], r["default_branch"] or "", r["path"] or "",
            config, drift,
        )  # fmt: skip
    console.print(table)


@repo_app.command("reload")
def repo_reload(ref: str = typer.Argument(help="repo id, id prefix or slug")) -> None:
    """Import the repo's .orrery.yml (or .agor.yml) again, for worktrees created from now on."""
    repo = api().call("POST", f"/api/repos/{ref}/reload")
    if repo["config_error"]:
        console.print(f"[yellow]{repo['config_source']} not used:[/] {repo['config_error']}")
    else:
        console.print(
            f"[green]reloaded[/] {repo['slug']} from {repo['config_source'] or 'nothing'}"
        )


@repo_app.command("rm")
def repo_rm(
    ref: str = typer.Argument(help="repo id, id prefix or slug"),
    delete_files: bool = typer.Option(False, help="also delete the clone Orrery made"),
) -> None:
    """Remove a repo (it must have no worktrees left)."""
    repo = api().call("DELETE", f"/api/repos/{ref}", params={"delete_files": delete_files})
    console.print(f"[green]removed[/] {repo['slug']}")


# -- worktrees -----------------------------------------------------------------------------------


@worktree_app.command("add")
def worktree_add(  # noqa: PLR0917 - typer maps each option to a parameter
    name: str = typer.Argument(help="lowercase letters, digits and dashes"),
    repo: str = typer.Option(..., "--repo", "-r", help="repo id, id prefix or slug"),
    branch: str | None = typer.Option(None, help="branch name (default: the worktree name)"),
    base: str | None = typer.Option(None, "--from", help="base branch (default: the default)"),
    checkout: bool = typer.Option(
        False, "--checkout", help="check out the existing BRANCH instead of creating it"
    ),
    issue: str | None = typer.Option(None, help="issue URL"),
    pr: str | None = typer.Option(None, help="pull request URL"),
    notes: str = typer.Option("", help="markdown notes"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a worktree: a new branch from a base (fetched first), or an existing branch."""
    body = {
        "repo": repo, "name": name, "branch": branch, "base": base, "new_branch": not checkout,
        "issue_url": issue, "pull_request_url": pr, "notes": notes,
    }  # fmt: skip
    with console.status(f"creating {name} …"):
        wt = api().call("POST", "/api/worktrees", json=body)
    if as_json:
        _print_json(wt)
        return
    console.print(f"[green]created[/] {wt['repo_slug']}/{wt['name']}  {wt['id']}  {wt['path']}")
    console.print(f"branch {wt['branch']}  ports {_ports(wt['ports'])}  slot {wt['unique_id']}")


@worktree_app.command("list")
def worktree_list(
    repo: str | None = typer.Option(None, "--repo", "-r"),
    archived: bool = typer.Option(False, help="include archived worktrees"),
    include_gone: bool = typer.Option(False, "--all", help="also deleted and failed ones"),
    as_json: bool = JsonOpt,
) -> None:
    """List worktrees with their environment state."""
    params: dict[str, Any] = {"archived": archived, "all": include_gone}
    if repo:
        params["repo"] = repo
    rows = api().call("GET", "/api/worktrees", params=params)
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "repo/name", "branch", "status", "ports", "env", "health", "drift")
    short = short_ids([w["id"] for w in rows])
    for w in rows:
        env = w["env"] or {}
        table.add_row(
            short[w["id"]], f"{w['repo_slug']}/{w['name']}", w["branch"], w["status"],
            _ports(w["ports"]), env.get("status", "") if w["env_configured"] else "-",
            env.get("health", "") if w["env_configured"] else "",
            "[red]missing on disk[/]" if w["missing"] else "",
        )  # fmt: skip
    console.print(table)


@worktree_app.command("show")
def worktree_show(
    ref: str = typer.Argument(help="id, id prefix or name"), as_json: bool = JsonOpt
) -> None:
    """Everything about one worktree."""
    w = api().call("GET", f"/api/worktrees/{ref}")
    if as_json:
        _print_json(w)
        return
    env = w["env"] or {}
    git = w["git"] or {}
    environment = (
        f"{env.get('status')} ({env.get('health')})" if w["env_configured"] else "not configured"
    )
    git_line = (
        f"{git.get('branch')} @ {(git.get('sha') or '')[:12]}{' dirty' if git.get('dirty') else ''}"
        if git
        else None
    )
    _kv([
        ("id", w["id"]), ("repo", w["repo_slug"]), ("name", w["name"]), ("branch", w["branch"]),
        ("status", w["status"] + (" (missing on disk)" if w["missing"] else "")),
        ("path", w["path"]), ("head", w["head_sha"]), ("slot", str(w["unique_id"] or "")),
        ("ports", _ports(w["ports"])), ("issue", w["issue_url"]), ("pr", w["pull_request_url"]),
        ("notes", w["notes"]), ("context", w["context"]),
        ("environment", environment),
        ("app", env.get("app_url") if env.get("status") == "running" else None),
        ("last error", env.get("last_error")),
        ("git", git_line),
        ("filesystem", w["filesystem"] if w["status"] == "archived" else None),
        ("error", w["error"]),
    ])  # fmt: skip


@worktree_app.command("update")
def worktree_update(
    ref: str = typer.Argument(help="id, id prefix or name"),
    issue: str | None = typer.Option(None, help="issue URL ('' clears)"),
    pr: str | None = typer.Option(None, help="pull request URL ('' clears)"),
    notes: str | None = typer.Option(None, help="markdown notes"),
    context: str | None = typer.Option(None, help="custom context as a JSON object"),
) -> None:
    """Update a worktree's issue/PR URLs, notes or custom context."""
    body: dict[str, Any] = {"issue_url": issue, "pull_request_url": pr, "notes": notes}
    if context is not None:
        try:
            body["context"] = json.loads(context)
        except ValueError as exc:
            raise typer.BadParameter(f"--context is not JSON: {exc}") from None
    w = api().call("PATCH", f"/api/worktrees/{ref}", json=body)
    console.print(f"[green]updated[/] {w['repo_slug']}/{w['name']}")


@worktree_app.command("archive")
def worktree_archive(
    ref: str = typer.Argument(help="id, id prefix or name"),
    filesystem: str = typer.Option(
        "preserved", help="preserved (keep files), cleaned (git clean -fdx) or deleted"
    ),
) -> None:
    """Archive: stop the environment, free the ports, then keep, clean or delete the files."""
    with console.status("archiving …"):
        w = api().call("POST", f"/api/worktrees/{ref}/archive", json={"filesystem": filesystem})
    extra = f", {w['files_removed']} files removed" if w["filesystem"] == "cleaned" else ""
    console.print(f"[green]archived[/] {w['repo_slug']}/{w['name']} ({w['filesystem']}{extra})")


@worktree_app.command("unarchive")
def worktree_unarchive(ref: str = typer.Argument(help="id, id prefix or name")) -> None:
    """Bring an archived worktree back (it gets a port block again)."""
    w = api().call("POST", f"/api/worktrees/{ref}/unarchive")
    console.print(f"[green]unarchived[/] {w['repo_slug']}/{w['name']}  ports {_ports(w['ports'])}")


@worktree_app.command("rm")
def worktree_rm(
    ref: str = typer.Argument(help="id, id prefix or name"),
    keep_files: bool = typer.Option(False, help="leave the directory and its git registration"),
) -> None:
    """Delete a worktree (and its files). One already deleted by hand is fine."""
    with console.status("removing …"):
        w = api().call("DELETE", f"/api/worktrees/{ref}", params={"delete_files": not keep_files})
    console.print(f"[green]deleted[/] {w['repo_slug']}/{w['name']}")


@worktree_app.command("reconcile")
def worktree_reconcile() -> None:
    """Compare Orrery's worktrees with `git worktree list` now (it also runs periodically)."""
    api().call("POST", "/api/worktrees/reconcile")
    console.print("reconciliation requested; see `orrery worktree list` and `orrery repo list`")


# -- environments --------------------------------------------------------------------------------


def _env_line(w: dict[str, Any]) -> str:
    env = w["env"] or {}
    parts = [f"{w['repo_slug']}/{w['name']}", env.get("status", "stopped")]
    if env.get("health") and env.get("health") != "unknown":
        parts.append(env["health"])
    if env.get("status") in ("starting", "running") and env.get("app_url"):
        parts.append(env["app_url"])
    if env.get("status") == "error" and env.get("detail"):
        parts.append(env["detail"])
    return "  ".join(parts)


def _env(ref: str, action: str) -> None:
    with console.status(f"{action} …"):
        w = api().call("POST", f"/api/worktrees/{ref}/env/{action}")
    console.print(_env_line(w))


@env_app.command("start")
def env_start(ref: str = typer.Argument(help="worktree id, id prefix or name")) -> None:
    """Start the environment (its ports are checked free first)."""
    _env(ref, "start")


@env_app.command("stop")
def env_stop(ref: str = typer.Argument(help="worktree id, id prefix or name")) -> None:
    """Stop it: the stop command, else SIGTERM, then SIGKILL after a grace period."""
    _env(ref, "stop")


@env_app.command("restart")
def env_restart(ref: str = typer.Argument(help="worktree id, id prefix or name")) -> None:
    """Stop (if running), then start."""
    _env(ref, "restart")


@env_app.command("status")
def env_status(ref: str = typer.Argument(help="worktree id, id prefix or name")) -> None:
    """The environment's state and health."""
    w = api().call("GET", f"/api/worktrees/{ref}")
    console.print(_env_line(w))
    env = w["env"] or {}
    if env.get("last_error"):
        console.print(f"last error: {env['last_error']}")


@env_app.command("logs")
def env_logs(
    ref: str = typer.Argument(help="worktree id, id prefix or name"),
    lines: int = typer.Option(100, "--lines", "-n", min=1, max=5000),
    follow: bool = typer.Option(False, "--follow", "-f", help="keep printing new output"),
    command: bool = typer.Option(
        False, "--command", help="run the environment's `logs` command instead"
    ),
) -> None:
    """The environment's output (kept for a day), or its `logs` command's output."""
    client = api()
    params: dict[str, Any] = {"lines": lines, "source": "command" if command else "output"}
    body = client.call("GET", f"/api/worktrees/{ref}/env/logs", params=params)
    if body.get("error"):
        console.print(f"[yellow]{body['error']}[/]")
    for line in body["lines"]:
        console.out(line, highlight=False)
    try:
        while follow and not command:
            time.sleep(0.5)
            body = client.call(
                "GET",
                f"/api/worktrees/{ref}/env/logs",
                params={"lines": 5000, "after": body["next"]},
            )
            for line in body["lines"]:
                console.out(line, highlight=False)
    except KeyboardInterrupt:
        return
