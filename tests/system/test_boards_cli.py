"""`orrery board` and `orrery zone` as a script runs them: the real CLI against `orrery up` (started
once for the file), a real repo and worktree to place on the boards."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import pytest

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.gitrepos import GIT_ENV, free_port_block
    from tests.gitrepos import make_repo as make_test_repo
    from tests.system.stackctl import orrery, start, stop, until, wait_healthy
else:
    from gitrepos import GIT_ENV, free_port_block
    from gitrepos import make_repo as make_test_repo
    from stackctl import orrery, start, stop, until, wait_healthy

pytestmark = pytest.mark.system


class Stack(NamedTuple):
    env: dict[str, str]
    api: httpx.Client
    worktree: dict[str, Any]  # app/one, made through the CLI


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("boards")
    repo = make_test_repo(root / "src" / "app", "{}\n", {"README.md": "app\n"}, {})
    proc, env = start(
        root / "home", extra={**GIT_ENV, "ORRERY_PORT_BASE": str(free_port_block(20))}
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{env['ORRERY_PORT']}", timeout=30)
    try:
        wait_healthy(proc, int(env["ORRERY_PORT"]), timeout=60)
        ok(orrery(env, "repo", "add", "--adopt", str(repo)))
        worktree = json.loads(ok(orrery(env, "worktree", "add", "one", "-r", "app", "--json")))
        yield Stack(env, api, worktree)
    finally:
        api.close()
        stop(proc)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """A refusal: exit 2, and the reason on stdout (one line) or stderr (usage errors)."""
    assert result.returncode == 2, result.stdout + result.stderr
    return " ".join((result.stdout + result.stderr).split())  # rich wraps long lines


def rows(out: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.startswith("│")
    ]


def test_board_lifecycle(stack: Stack) -> None:
    env = stack.env
    out = ok(orrery(env, "board", "new", "Sprint 12", "--icon", "🚀", "--color", "#ff0000",
                    "--description", "the *sprint*", "--context", '{"team": "core"}'))  # fmt: skip
    found = re.search(r"created board sprint-12 {2}([0-9a-f-]{36}) {2}Sprint 12", out)
    assert found, out
    board_id = found[1]
    other = json.loads(ok(orrery(env, "board", "new", "Other", "--slug", "o-1", "--json")))
    assert (other["slug"], other["name"], other["icon"], other["context"]) == (
        "o-1",
        "Other",
        "",
        {},
    )

    listed = {row[1]: row for row in rows(ok(orrery(env, "board", "list")))}
    assert listed["sprint-12"][2:4] == ["Sprint 12", "🚀"]
    assert board_id.startswith(listed["sprint-12"][0]) and len(listed["sprint-12"][0]) >= 8

    out = ok(orrery(env, "board", "show", "sprint-12"))
    assert re.search(rf"id\s+{board_id}", out) and re.search(r"color\s+#ff0000", out), out
    assert '{"team": "core"}' in out and "no zones" in out and "no cards" in out, out
    assert re.search(r"notes\s+0", out) and "0 open thread(s)" in out, out
    snapshot = json.loads(ok(orrery(env, "board", "show", board_id[:13], "--json")))
    assert snapshot["board"]["id"] == board_id and snapshot["zones"] == []

    # A context that is not a JSON object: a usage error, before any request.
    out = refused(orrery(env, "board", "new", "Bad", "--context", "[1]"))
    assert "Invalid value for --context: must be a JSON object" in out, out

    # A slug taken: one line, exit 2.
    out = refused(orrery(env, "board", "new", "Again", "--slug", "sprint-12"))
    assert out.startswith("error: a board already has the slug 'sprint-12' (board.slug_taken)")

    out = ok(orrery(env, "board", "rename", "sprint-12", "Sprint twelve"))
    assert out.strip() == "renamed board sprint-12 to Sprint twelve"
    assert stack.api.get(f"/api/boards/{board_id}").json()["board"]["name"] == "Sprint twelve"

    for ref in ("sprint-12", "o-1"):
        assert ok(orrery(env, "board", "delete", ref)).startswith(f"deleted board {ref}")
    slugs = [row[1] for row in rows(ok(orrery(env, "board", "list")))]
    assert "sprint-12" not in slugs and "o-1" not in slugs
    listed = {row[1]: row for row in rows(ok(orrery(env, "board", "list", "--all")))}
    assert listed["sprint-12"][2] == "Sprint twelve (deleted)"


def test_zones_cards_and_triggers(stack: Stack, tmp_path: Path) -> None:  # noqa: PLR0915 - story
    env, wt = stack.env, stack.worktree
    ok(orrery(env, "board", "new", "Flow", "--slug", "flow"))

    # A zone with a trigger read from a file; a plain one; two zones sharing a label.
    template = tmp_path / "review.j2"
    template.write_text("Review {{ worktree.name }} please")
    trigger_options = ["--trigger-file", str(template), "--agent", "codex", "--model", "gpt-5"]
    out = ok(orrery(env, "zone", "add", "flow", "Review", "--at", "0,0", "--size", "600,400",
                    *trigger_options))  # fmt: skip
    found = re.search(r"added zone Review {2}([0-9a-f-]{36}) {2}at 0,0 {2}size 600x400", out)
    assert found, out
    review = found[1]
    assert "trigger show_picker codex gpt-5" in out
    done = json.loads(ok(orrery(env, "zone", "add", "flow", "Done", "--at", "2000,0",
                                "--size", "500,500", "--locked", "--json")))  # fmt: skip
    assert (done["label"], done["locked"], done["trigger"]) == ("Done", True, None)
    for x in ("4000", "5000"):
        ok(orrery(env, "zone", "add", "flow", "Dup", "--at", f"{x},0", "--size", "50,50"))

    table = rows(ok(orrery(env, "zone", "list", "flow")))
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in table] == [
        ("Review", "0,0", "600x400", "", "show_picker codex gpt-5"),
        ("Done", "2000,0", "500x500", "yes", ""),
        ("Dup", "4000,0", "50x50", "", ""),
        ("Dup", "5000,0", "50x50", "", ""),
    ]

    # Zones by label, id or id prefix; ambiguous or unknown ones said clearly.
    out = refused(orrery(env, "zone", "update", "flow", "Dup", "--label", "x"))
    assert out.startswith("error: 'Dup' names 2 zones on flow:") and "(zone.ambiguous)" in out
    out = refused(orrery(env, "zone", "update", "flow", "Nope", "--label", "x"))
    assert "no zone 'Nope' on board flow" in out and "(zone.not_found)" in out
    out = ok(orrery(env, "zone", "update", "flow", review[:13], "--at", "100,50",
                    "--behavior", "always_new"))  # fmt: skip
    assert (
        out.strip()
        == "updated zone Review  at 100,50  size 600x400  trigger always_new codex gpt-5"
    )
    out = ok(orrery(env, "zone", "update", "flow", review, "--behavior", "show_picker", "--lock"))
    assert "locked" in out and "trigger show_picker codex gpt-5" in out, out
    zone = next(z for z in stack.api.get("/api/boards/flow").json()["zones"] if z["id"] == review)
    assert (
        zone["locked"] and zone["x"] == 100 and zone["trigger"]["template"] == template.read_text()
    )

    # A locked zone does not move: one line, exit 2; it moves once unlocked.
    out = refused(orrery(env, "zone", "update", "flow", "Review", "--at", "0,0"))
    assert out.startswith("error: zone Review is locked: unlock it (zone.locked)"), out
    out = ok(orrery(env, "zone", "update", "flow", "Review", "--unlock", "--at", "0,0"))
    assert out.startswith("updated zone Review  at 0,0") and "locked" not in out, out

    # Bad input, checked before any request.
    assert "'1;2' is not two numbers" in refused(
        orrery(env, "zone", "update", "flow", "Review", "--at", "1;2")
    )
    assert "a width and height above 0" in refused(
        orrery(env, "zone", "add", "flow", "Z", "--at", "1,2", "--size", "0,5")
    )
    assert "configure a trigger" in refused(
        orrery(env, "zone", "add", "flow", "Z", "--at", "1,2", "--size", "5,5", "--agent", "codex")
    )
    assert "nothing to change" in refused(orrery(env, "zone", "update", "flow", "Review"))

    # Place the worktree's card in the trigger zone (its centre decides): the trigger's id.
    out = ok(orrery(env, "board", "place", "flow", "one", "--at", "100,100"))
    assert out.startswith("placed one at 100,100 in zone Review"), out
    found = re.search(r"trigger ([0-9a-f-]{36}) {2}(requested|offered)", out)
    assert found, out
    trigger = found[1]
    offered = until(
        lambda: (
            (t := stack.api.get(f"/api/boards/flow/triggers/{trigger}").json())["status"]
            == "offered"
            and t
        ),
        what="the trigger offered",
    )
    assert offered["prompt"] == "Review one please" and offered["worktree_id"] == wt["id"]
    out = ok(orrery(env, "board", "show", "flow"))
    [card] = [r for r in rows(out) if r[0] == "app/one"]
    assert wt["id"].startswith(card[1]) and card[2:4] == ["Review", "100,100"], out
    assert trigger in out and "offered" in out
    out = ok(orrery(env, "board", "trigger", "flow", trigger[:8]))
    assert f"trigger {trigger}  offered" in out and "prompt   Review one please" in out, out
    fork = orrery(env, "board", "choose", "flow", trigger, "--action", "fork")
    assert "(trigger.session_required)" in refused(fork)
    out = ok(orrery(env, "board", "choose", "flow", trigger[:8], "--prompt", "Review one, briefly"))
    assert f"trigger {trigger}  fired" in out and "prompt   Review one, briefly" in out, out

    # Off the trigger zone and back by repo/name: a new trigger only on entering again.
    out = ok(orrery(env, "board", "place", "flow", "app/one", "--at", "1000,1000"))
    assert out.strip() == "placed app/one at 1000,1000 in no zone"
    out = ok(orrery(env, "board", "place", "flow", wt["id"][:13], "--at", "20,30"))
    again = re.search(r"trigger ([0-9a-f-]{36})", out)
    assert again and again[1] != trigger, out
    assert f"trigger {again[1]}  dismissed" in ok(orrery(env, "board", "dismiss", "flow", again[1]))

    # The zone with a pinned card: refused, the worktree listed, the choices said.
    result = orrery(env, "zone", "delete", "flow", "Review")
    out = refused(result)
    assert "card(s) are pinned to this zone" in out and "(zone.has_cards)" in out, out
    assert f"pinned: app/one {wt['id']}" in out
    assert "pass --cards unpin (the cards stay on the board) or --cards remove" in out
    assert any(z["id"] == review for z in stack.api.get("/api/boards/flow").json()["zones"])
    out = ok(orrery(env, "zone", "delete", "flow", "Review", "--cards", "unpin"))
    assert out.strip() == "deleted zone Review from flow; 1 card(s) unpinned"
    snapshot = stack.api.get("/api/boards/flow").json()
    [card_out] = snapshot["cards"]
    assert (card_out["zone_id"], card_out["x"], card_out["y"]) == (None, 20, 30)
    assert [z["label"] for z in snapshot["zones"]] == ["Done", "Dup", "Dup"]

    # Unpin and take the card off the board.
    ok(orrery(env, "board", "place", "flow", "one", "--at", "2010,10"))
    assert ok(orrery(env, "board", "unpin", "flow", "one")).strip() == "unpinned one  at 2010,10"
    out = ok(orrery(env, "board", "remove-card", "flow", "one"))
    assert out.strip() == "removed one's card from board flow"
    assert stack.api.get("/api/boards/flow").json()["cards"] == []
    out = refused(orrery(env, "board", "unpin", "flow", "one"))
    assert out.startswith("error:") and "not_found" in out, out
