"""``orrery board`` and ``orrery zone``: thin commands over the canvas REST API, for scripted
setups (the canvas itself is the web UI's).

Boards are named by id, id prefix or slug (the API resolves them); zones by id, id prefix or
exact label, resolved here from the board's snapshot; worktrees by id, id prefix, name or
``repo/name``. Coordinates are board coordinates; a card's ``--at`` is its top-left corner and
it pins to the zone under its centre.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import typer
from orrery.cli.api import Api, ApiCallError
from orrery.cli.display import JsonOpt, api, console, short_ids
from orrery.cli.display import kv as _kv
from orrery.cli.display import print_json as _print_json
from rich.table import Table

board_app = typer.Typer(
    help="Canvas boards: create, list, show, rename, delete; place, unpin and remove cards."
)
zone_app = typer.Typer(help="A board's zones: add (with a trigger), list, update, delete.")

PENDING = ("requested", "offered")  # a trigger still waiting (for the service or for a choice)


# -- parsing and formatting ----------------------------------------------------------------------


def _pair(value: str, option: str, *, positive: bool = False) -> tuple[float, float]:
    """``"X,Y"`` -> two finite numbers (sizes: positive)."""
    parts = value.split(",")
    try:
        if len(parts) != 2:
            raise ValueError(value)
        a, b = (float(p.strip()) for p in parts)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not two numbers separated by a comma (e.g. 100,200)", param_hint=option
        ) from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise typer.BadParameter(f"{value!r}: the numbers must be finite", param_hint=option)
    if positive and (a <= 0 or b <= 0):
        raise typer.BadParameter(f"{value!r}: a width and height above 0", param_hint=option)
    return a, b


def _context(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--context") from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("must be a JSON object ({...})", param_hint="--context")
    return parsed


def _template(text: str | None, path: str | None) -> str | None:
    if text is not None and path is not None:
        raise typer.BadParameter("give --trigger-template or --trigger-file, not both")
    if path is None:
        return text
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read it: {exc}", param_hint="--trigger-file") from None


def _num(value: float) -> str:
    return f"{value:g}"


def _at(x: float, y: float) -> str:
    return f"{_num(x)},{_num(y)}"


def _seg(ref: str) -> str:
    return quote(ref, safe="")


def _trigger(zone: dict[str, Any]) -> dict[str, Any] | None:
    """A zone's trigger, flat: ``{template, behavior, agent, model, permission_mode}``."""
    t = zone.get("trigger")
    if not t:
        return None
    settings = t.get("settings") or t
    return {
        "template": t.get("template", ""),
        "behavior": t.get("behavior", "show_picker"),
        "agent": settings.get("agent", "builtin"),
        "model": settings.get("model", ""),
        "permission_mode": settings.get("permission_mode", "ask"),
    }


def _trigger_line(zone: dict[str, Any]) -> str:
    t = _trigger(zone)
    if t is None:
        return ""
    return f"{t['behavior']} {t['agent']}" + (f" {t['model']}" if t["model"] else "")


def _zone_ref(snapshot: dict[str, Any], ref: str) -> dict[str, Any]:
    """The zone ``ref`` names on the board: its id, its exact label, or an id prefix."""
    zones: list[dict[str, Any]] = snapshot["zones"]
    board = snapshot["board"]["slug"]
    for found in (
        [z for z in zones if z["id"] == ref],
        [z for z in zones if z["label"] == ref],
        [z for z in zones if z["id"].startswith(ref)],
    ):
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            names = ", ".join(f"{z['id']} ({z['label'] or 'no label'})" for z in found)
            raise ApiCallError(
                0, "zone.ambiguous", f"{ref!r} names {len(found)} zones on {board}: {names}"
            )
    known = ", ".join(repr(z["label"]) for z in zones) or "it has none"
    raise ApiCallError(0, "zone.not_found", f"no zone {ref!r} on board {board} (zones: {known})")


def _worktree_names(client: Api) -> dict[str, str]:
    trees = client.call("GET", "/api/worktrees", params={"archived": True, "all": True})
    return {w["id"]: f"{w['repo_slug']}/{w['name']}" for w in trees}


def _worktree_ref(client: Api, ref: str) -> str:
    """``repo/name`` cannot travel in a URL path segment: such a ref becomes the id here."""
    if "/" not in ref:
        return ref
    trees = client.call("GET", "/api/worktrees")
    found = [w["id"] for w in trees if f"{w['repo_slug']}/{w['name']}" == ref]
    if not found:
        raise ApiCallError(0, "worktree.not_found", f"no worktree {ref!r}")
    return str(found[0])


def _zones_table(zones: list[dict[str, Any]]) -> Table:
    table = Table("label", "id", "position", "size", "locked", "trigger")
    short = short_ids([z["id"] for z in zones])
    for z in zones:
        table.add_row(
            z["label"], short[z["id"]], _at(z["x"], z["y"]),
            f"{_num(z['width'])}x{_num(z['height'])}", "yes" if z["locked"] else "",
            _trigger_line(z),
        )  # fmt: skip
    return table


def _card_position(card: dict[str, Any], zones: dict[str, dict[str, Any]]) -> str:
    """A card's board coordinates (a pinned card's ``x``/``y`` are relative to its zone)."""
    if "abs_x" in card:
        return _at(card["abs_x"], card["abs_y"])
    zone = zones.get(card.get("zone_id") or "")
    if zone is None:
        return _at(card["x"], card["y"])
    return _at(zone["x"] + card["x"], zone["y"] + card["y"])


# -- boards --------------------------------------------------------------------------------------


@board_app.command("list")
def board_list(
    include_deleted: bool = typer.Option(False, "--all", help="also deleted boards"),
    as_json: bool = JsonOpt,
) -> None:
    """List boards."""
    boards = api().call("GET", "/api/boards", params={"all": include_deleted})
    if as_json:
        _print_json(boards)
        return
    table = Table("id", "slug", "name", "icon", "updated")
    short = short_ids([b["id"] for b in boards])
    for b in boards:
        table.add_row(
            short[b["id"]], b["slug"], b["name"] + (" (deleted)" if b["deleted"] else ""),
            b["icon"] or "", str(b["updated_at"])[:19].replace("T", " "),
        )  # fmt: skip
    console.print(table)


@board_app.command("new")
def board_new(  # noqa: PLR0917 - typer maps each option to a parameter
    name: str = typer.Argument(help="the board's name"),
    slug: str | None = typer.Option(
        None, help="lowercase letters, digits and dashes (default: made from the name)"
    ),
    icon: str | None = typer.Option(None, help="an emoji"),
    color: str | None = typer.Option(None, help="accent colour, e.g. #5b8def"),
    background: str | None = typer.Option(None, help="background colour"),
    description: str | None = typer.Option(None, help="markdown description"),
    context: str | None = typer.Option(None, help="custom context as a JSON object"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a board; prints its slug and id."""
    body: dict[str, Any] = {
        "name": name, "slug": slug, "icon": icon, "color": color, "background_color": background,
        "description": description, "context": _context(context) if context is not None else None,
    }  # fmt: skip
    board = api().call("POST", "/api/boards", json={k: v for k, v in body.items() if v is not None})
    if as_json:
        _print_json(board)
        return
    console.print(f"[green]created[/] board {board['slug']}  {board['id']}  {board['name']}")


@board_app.command("show")
def board_show(
    ref: str = typer.Argument(help="board id, id prefix or slug"), as_json: bool = JsonOpt
) -> None:
    """A board: its settings, zones, cards, notes and comments counts, and pending triggers."""
    client = api()
    snap = client.call("GET", f"/api/boards/{_seg(ref)}")
    if as_json:
        _print_json(snap)
        return
    b = snap["board"]
    threads = snap["comments"]  # live threads, replies nested
    open_threads = [t for t in threads if not t["resolved"]]
    comments = sum(1 + len(t.get("replies") or []) for t in threads)
    _kv([
        ("id", b["id"]), ("name", b["name"]), ("slug", b["slug"]), ("icon", b["icon"]),
        ("status", "deleted" if b["deleted"] else None),
        ("color", b["color"]), ("background", b["background_color"]),
        ("description", b["description"]), ("context", b["context"]),
        ("created", f"{str(b['created_at'])[:19].replace('T', ' ')} by {b['created_by']}"),
        ("updated", str(b["updated_at"])[:19].replace("T", " ")),
        ("notes", str(len(snap["notes"]))),
        ("comments", f"{len(open_threads)} open thread(s), {comments} comment(s)"),
    ])  # fmt: skip
    zones = {z["id"]: z for z in snap["zones"]}
    if snap["zones"]:
        console.print(_zones_table(snap["zones"]))
    else:
        console.print("no zones")
    cards, triggers = snap["cards"], [t for t in snap["triggers"] if t["status"] in PENDING]
    names = _worktree_names(client) if cards or triggers else {}
    if cards:
        table = Table("worktree", "id", "zone", "position", "size")
        short = short_ids([c["worktree_id"] for c in cards])
        for c in cards:
            zone = zones.get(c.get("zone_id") or "")
            table.add_row(
                names.get(c["worktree_id"], ""), short[c["worktree_id"]],
                zone["label"] or zone["id"] if zone else "-", _card_position(c, zones),
                f"{_num(c['width'])}x{_num(c['height'])}",
            )  # fmt: skip
        console.print(table)
    else:
        console.print("no cards")
    if triggers:
        table = Table("pending trigger", "status", "zone", "worktree")
        for t in triggers:
            zone = zones.get(t["zone_id"])
            table.add_row(
                t["id"], t["status"], zone["label"] if zone else t["zone_id"],
                names.get(t["worktree_id"], t["worktree_id"]),
            )  # fmt: skip
        console.print(table)


@board_app.command("rename")
def board_rename(
    ref: str = typer.Argument(help="board id, id prefix or slug"),
    name: str = typer.Argument(help="the new name (the slug stays)"),
) -> None:
    """Rename a board."""
    board = api().call("PATCH", f"/api/boards/{_seg(ref)}", json={"name": name})
    console.print(f"[green]renamed[/] board {board['slug']} to {board['name']}")


@board_app.command("delete")
def board_delete(ref: str = typer.Argument(help="board id, id prefix or slug")) -> None:
    """Delete a board."""
    board = api().call("DELETE", f"/api/boards/{_seg(ref)}")
    console.print(f"[green]deleted[/] board {board['slug']}  {board['id']}")


# -- cards ---------------------------------------------------------------------------------------


@board_app.command("place")
def board_place(
    board: str = typer.Argument(help="board id, id prefix or slug"),
    worktree: str = typer.Argument(help="worktree id, id prefix, name or repo/name"),
    at: str = typer.Option(
        ..., "--at", help="X,Y: the card's top-left corner (negative: --at=-10,20)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Place or move a worktree's card: it pins to the zone under its centre (trigger and all)."""
    x, y = _pair(at, "--at")
    client = api()
    path = f"/api/boards/{_seg(board)}/cards/{_seg(_worktree_ref(client, worktree))}"
    moved = client.call("PUT", path, json={"x": x, "y": y})
    if as_json:
        _print_json(moved)
        return
    card, trigger = moved["card"], moved["trigger"]
    where = "in no zone"
    if card.get("zone_id"):
        snap = client.call("GET", f"/api/boards/{_seg(board)}")
        zone = next((z for z in snap["zones"] if z["id"] == card["zone_id"]), None)
        where = f"in zone {zone['label'] or zone['id'] if zone else card['zone_id']}"
    console.print(f"[green]placed[/] {worktree} at {_at(x, y)} {where}")
    if trigger:
        console.print(f"trigger {trigger['id']}  {trigger['status']}")


def _trigger_ref(client: Api, board: str, ref: str) -> str:
    """A trigger's id from an id or a unique prefix of an open trigger's id."""
    snap = client.call("GET", f"/api/boards/{_seg(board)}")
    found = [t["id"] for t in snap["triggers"] if t["id"].startswith(ref)]
    return found[0] if len(found) == 1 else ref


def _print_trigger(trigger: dict[str, Any]) -> None:
    console.print(f"trigger {trigger['id']}  {trigger['status']}")
    if trigger.get("action"):
        console.print(f"action   {trigger['action']}  session {trigger.get('session_id') or '-'}")
    if trigger.get("prompt"):
        console.print(f"prompt   {trigger['prompt']}")
    if trigger["status"] == "failed":
        console.print(f"[red]failed:[/] {trigger.get('message')} ({trigger.get('code')})")


@board_app.command("trigger")
def board_trigger(
    board: str = typer.Argument(help="board id, id prefix or slug"),
    trigger: str = typer.Argument(help="trigger id (or a prefix of an open one's)"),
    as_json: bool = JsonOpt,
) -> None:
    """A zone trigger: requested, offered (with the rendered prompt), fired, failed, dismissed."""
    client = api()
    found = client.call(
        "GET", f"/api/boards/{_seg(board)}/triggers/{_seg(_trigger_ref(client, board, trigger))}"
    )
    if as_json:
        _print_json(found)
        return
    _print_trigger(found)


@board_app.command("choose")
def board_choose(  # noqa: PLR0917 - typer maps each option to a parameter
    board: str = typer.Argument(help="board id, id prefix or slug"),
    trigger: str = typer.Argument(help="trigger id (or a prefix of an open one's)"),
    action: Literal["new_session", "prompt", "fork", "spawn"] = typer.Option(
        "new_session", help="a new session, or prompt, fork or spawn --session"
    ),
    session: str | None = typer.Option(None, help="the session to prompt, fork or spawn from"),
    prompt: str | None = typer.Option(None, help="instead of the rendered prompt"),
    agent: str | None = typer.Option(None, help="instead of the zone's agent"),
    model: str | None = typer.Option(None, help="instead of the zone's model"),
    permission_mode: str | None = typer.Option(None, help="ask, auto or allow-all"),
) -> None:
    """Answer a show_picker trigger: what to run, on which session, with which prompt."""
    client = api()
    trigger_id = _trigger_ref(client, board, trigger)
    body: dict[str, Any] = {"action": action}
    extra = {"session": session, "prompt": prompt, "agent": agent, "model": model}
    body |= {k: v for k, v in (extra | {"permission_mode": permission_mode}).items() if v}
    fired = client.call(
        "POST", f"/api/boards/{_seg(board)}/triggers/{_seg(trigger_id)}/choose", json=body
    )
    _print_trigger(fired)


@board_app.command("dismiss")
def board_dismiss(
    board: str = typer.Argument(help="board id, id prefix or slug"),
    trigger: str = typer.Argument(help="trigger id (or a prefix of an open one's)"),
) -> None:
    """Dismiss a show_picker trigger."""
    client = api()
    trigger_id = _trigger_ref(client, board, trigger)
    _print_trigger(
        client.call("POST", f"/api/boards/{_seg(board)}/triggers/{_seg(trigger_id)}/dismiss")
    )


@board_app.command("unpin")
def board_unpin(
    board: str = typer.Argument(help="board id, id prefix or slug"),
    worktree: str = typer.Argument(help="worktree id, id prefix, name or repo/name"),
) -> None:
    """Unpin a card from its zone; it stays where it is."""
    client = api()
    path = f"/api/boards/{_seg(board)}/cards/{_seg(_worktree_ref(client, worktree))}/unpin"
    card = client.call("POST", path)
    console.print(f"[green]unpinned[/] {worktree}  at {_card_position(card, {})}")


@board_app.command("remove-card")
def board_remove_card(
    board: str = typer.Argument(help="board id, id prefix or slug"),
    worktree: str = typer.Argument(help="worktree id, id prefix, name or repo/name"),
) -> None:
    """Take a worktree's card off the board (the worktree stays)."""
    client = api()
    path = f"/api/boards/{_seg(board)}/cards/{_seg(_worktree_ref(client, worktree))}"
    snap = client.call("DELETE", path)
    console.print(f"[green]removed[/] {worktree}'s card from board {snap['board']['slug']}")


# -- zones ---------------------------------------------------------------------------------------


def _trigger_body(
    base: dict[str, Any] | None, template: str | None, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """The whole trigger to send (the API replaces it): ``base`` with the options given, or None
    when no trigger option was given."""
    given = {k: v for k, v in changes.items() if v is not None}
    if template is None and not given:
        return None
    if template is None and base is None:
        options = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise typer.BadParameter(
            f"{options} configure a trigger: give --trigger-template or --trigger-file too"
        )
    body = dict(base or {})
    if template is not None:
        body["template"] = template
    return {**body, **given}


@zone_app.command("add")
def zone_add(  # noqa: PLR0917 - typer maps each option to a parameter
    board: str = typer.Argument(help="board id, id prefix or slug"),
    label: str = typer.Argument(help="the zone's label"),
    at: str = typer.Option(..., "--at", help="X,Y: the top-left corner (negative: --at=-10,20)"),
    size: str = typer.Option(..., "--size", help="W,H"),
    border_color: str | None = typer.Option(None, help="e.g. #5b8def"),
    background_color: str | None = typer.Option(None, help="e.g. #5b8def1a"),
    locked: bool = typer.Option(False, "--locked", help="cannot move, resize or delete it"),
    trigger_template: str | None = typer.Option(
        None, help="a prompt template (Jinja2) run when a card enters the zone"
    ),
    trigger_file: str | None = typer.Option(None, help="read the template from this file"),
    behavior: Literal["always_new", "show_picker"] | None = typer.Option(
        None, help="always_new: start a session at once; show_picker (default): let the user pick"
    ),
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] | None = typer.Option(
        None, help="the trigger's agent (default builtin)"
    ),
    model: str | None = typer.Option(None, help="the trigger's model (default: the agent's)"),
    permission_mode: Literal["ask", "auto", "allow-all"] | None = typer.Option(
        None, help="the trigger's (default ask)"
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Add a zone, optionally with a trigger; prints its id."""
    x, y = _pair(at, "--at")
    width, height = _pair(size, "--size", positive=True)
    trigger = _trigger_body(
        None,
        _template(trigger_template, trigger_file),
        {"behavior": behavior, "agent": agent, "model": model, "permission_mode": permission_mode},
    )
    body: dict[str, Any] = {
        "label": label, "x": x, "y": y, "width": width, "height": height, "locked": locked,
        "border_color": border_color, "background_color": background_color, "trigger": trigger,
    }  # fmt: skip
    zone = api().call(
        "POST",
        f"/api/boards/{_seg(board)}/zones",
        json={k: v for k, v in body.items() if v is not None},
    )
    if as_json:
        _print_json(zone)
        return
    console.print(
        f"[green]added[/] zone {zone['label']}  {zone['id']}  at {_at(zone['x'], zone['y'])}"
        f"  size {_num(zone['width'])}x{_num(zone['height'])}"
        + ("  locked" if zone["locked"] else "")
    )
    if zone.get("trigger"):
        console.print(f"trigger {_trigger_line(zone)}")


@zone_app.command("list")
def zone_list(
    board: str = typer.Argument(help="board id, id prefix or slug"), as_json: bool = JsonOpt
) -> None:
    """A board's zones, bottom to top."""
    zones = api().call("GET", f"/api/boards/{_seg(board)}")["zones"]
    if as_json:
        _print_json(zones)
        return
    if not zones:
        console.print("no zones")
        return
    console.print(_zones_table(zones))


@zone_app.command("update")
def zone_update(  # noqa: PLR0917 - typer maps each option to a parameter
    board: str = typer.Argument(help="board id, id prefix or slug"),
    zone_ref: str = typer.Argument(help="zone id, id prefix or exact label"),
    label: str | None = typer.Option(None, help="a new label"),
    at: str | None = typer.Option(None, "--at", help="X,Y: move it (negative: --at=-10,20)"),
    size: str | None = typer.Option(None, "--size", help="W,H: resize it"),
    border_color: str | None = typer.Option(None),
    background_color: str | None = typer.Option(None),
    locked: bool | None = typer.Option(None, "--lock/--unlock", help="lock or unlock it"),
    trigger_template: str | None = typer.Option(None, help="a new prompt template (Jinja2)"),
    trigger_file: str | None = typer.Option(None, help="read the template from this file"),
    behavior: Literal["always_new", "show_picker"] | None = typer.Option(
        None, help="the trigger's behaviour"
    ),
    agent: Literal["builtin", "claude-code", "codex", "gemini", "opencode"] | None = typer.Option(
        None, help="the trigger's agent"
    ),
    model: str | None = typer.Option(None, help="the trigger's model"),
    permission_mode: Literal["ask", "auto", "allow-all"] | None = typer.Option(
        None, help="the trigger's"
    ),
    clear_trigger: bool = typer.Option(False, "--clear-trigger", help="remove the trigger"),
    as_json: bool = JsonOpt,
) -> None:
    """Move, resize, relabel, lock or unlock a zone, or change or clear its trigger (options
    not given stay as they are)."""
    geometry: dict[str, float] = {}
    if at is not None:
        geometry["x"], geometry["y"] = _pair(at, "--at")
    if size is not None:
        geometry["width"], geometry["height"] = _pair(size, "--size", positive=True)
    template = _template(trigger_template, trigger_file)
    changes = {"behavior": behavior, "agent": agent, "model": model,
               "permission_mode": permission_mode}  # fmt: skip
    if clear_trigger and (template is not None or any(v is not None for v in changes.values())):
        raise typer.BadParameter("--clear-trigger and trigger options do not go together")
    client = api()
    snap = client.call("GET", f"/api/boards/{_seg(board)}")
    zone = _zone_ref(snap, zone_ref)
    trigger = _trigger_body(_trigger(zone), template, changes)
    body: dict[str, Any] = {
        "label": label, "border_color": border_color, "background_color": background_color,
        "locked": locked, "trigger": trigger, **geometry,
    }  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    if clear_trigger:
        body["clear_trigger"] = True
    if not body:
        raise typer.BadParameter("nothing to change: give at least one option (see --help)")
    zone = client.call(
        "PATCH", f"/api/boards/{snap['board']['id']}/zones/{_seg(zone['id'])}", json=body
    )
    if as_json:
        _print_json(zone)
        return
    console.print(
        f"[green]updated[/] zone {zone['label']}  at {_at(zone['x'], zone['y'])}"
        f"  size {_num(zone['width'])}x{_num(zone['height'])}"
        + ("  locked" if zone["locked"] else "")
        + (f"  trigger {_trigger_line(zone)}" if zone.get("trigger") else "")
    )


@zone_app.command("delete")
def zone_delete(
    board: str = typer.Argument(help="board id, id prefix or slug"),
    zone_ref: str = typer.Argument(help="zone id, id prefix or exact label"),
    cards: Literal["unpin", "remove"] | None = typer.Option(
        None, help="with pinned cards: unpin them (they stay) or remove them from the board"
    ),
) -> None:
    """Delete a zone (refused while cards are pinned to it, unless --cards says what to do)."""
    client = api()
    snap = client.call("GET", f"/api/boards/{_seg(board)}")
    zone = _zone_ref(snap, zone_ref)
    board_id = snap["board"]["id"]
    try:
        after = client.call(
            "DELETE",
            f"/api/boards/{board_id}/zones/{_seg(zone['id'])}",
            params={"cards": cards or "refuse"},
        )
    except ApiCallError as exc:
        if exc.code != "zone.has_cards":
            raise
        pinned = [str(w) for w in exc.detail.get("worktrees", [])]
        names = _worktree_names(client) if pinned else {}
        console.print(f"[red]error:[/] {exc.message}")
        for worktree_id in pinned:
            console.print(f"  pinned: {names.get(worktree_id, '?')}  {worktree_id}")
        console.print("pass --cards unpin (the cards stay on the board) or --cards remove")
        raise typer.Exit(2) from None
    gone = [c for c in snap["cards"] if c.get("zone_id") == zone["id"]]
    what = f"; {len(gone)} card(s) {'unpinned' if cards == 'unpin' else 'removed'}" if gone else ""
    console.print(
        f"[green]deleted[/] zone {zone['label'] or zone['id']} from {after['board']['slug']}{what}"
    )
