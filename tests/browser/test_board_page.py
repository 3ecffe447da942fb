"""The board as two people see it: `orrery up` serves the page; both viewers see a zone and a
card placed through REST without reloading, one sees the other's cursor, and dragging a card with
the mouse moves it on the server."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts tests/ on sys.path
    from tests.gitrepos import GIT_ENV, free_port_block, make_repo
    from tests.system.stackctl import start, stop, until, wait_healthy
else:
    from gitrepos import GIT_ENV, free_port_block, make_repo
    from system.stackctl import start, stop, until, wait_healthy


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[str]:
    """One `orrery up` for the file, with git and worktree ports as the system tests use."""
    assert (repo_root / "web" / "dist" / "index.html").is_file(), "build the UI: make test does"
    proc, env = start(
        tmp_path_factory.mktemp("home"),
        extra={**GIT_ENV, "ORRERY_PORT_BASE": str(free_port_block(30))},
    )
    port = int(env["ORRERY_PORT"])
    try:
        wait_healthy(proc, port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def viewer(browser: Browser, url: str, name: str, errors: list[str]) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.on("pageerror", lambda e: errors.append(f"{name}: {e}"))
    page.goto(url.replace("#", f"?name={name}#", 1))
    return page


@pytest.fixture(scope="module")
def api(stack: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A REST client on the stack, whose repository ``app`` is adopted."""
    repo = make_repo(tmp_path_factory.mktemp("src") / "app", "", {"README.md": "app\n"}, {})
    with httpx.Client(base_url=stack, timeout=60) as client:
        added = client.post("/api/repos", json={"source": str(repo), "adopt": True})
        assert added.status_code == 201, added.text
        yield client


def _worktree(api: httpx.Client, name: str) -> str:
    made = api.post("/api/worktrees", json={"repo": "app", "name": name})
    assert made.status_code in (200, 201), made.text
    return str(made.json()["id"])


def _board_with_zone(api: httpx.Client, name: str, **zone: Any) -> tuple[str, str]:
    """A board with one zone at 0,0 (600 by 400): (board slug, zone id)."""
    slug = api.post("/api/boards", json={"name": name}).json()["slug"]
    made = api.post(
        f"/api/boards/{slug}/zones", json={"x": 0, "y": 0, "width": 600, "height": 400, **zone}
    )
    assert made.status_code == 201, made.text
    return slug, made.json()["id"]


def _drag_into_zone(page: Page, card_id: str) -> None:
    """Drag the card with the mouse to the middle of the (only) zone."""
    page.locator(".react-flow__controls-fitview").click()
    page.wait_for_timeout(300)  # the fit view animation
    card_box = page.get_by_test_id(card_id).bounding_box()
    zone_box = page.locator(".orrery-zone").bounding_box()
    assert card_box and zone_box
    start = (card_box["x"] + card_box["width"] / 2, card_box["y"] + 20)
    goal = (zone_box["x"] + zone_box["width"] / 2, zone_box["y"] + zone_box["height"] / 2)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] - 10, start[1] + 10, steps=3)
    page.mouse.move(*goal, steps=15)
    page.mouse.up()


def test_two_viewers_share_a_board(
    browser: Browser, stack: str, api: httpx.Client, tmp_path: Path
) -> None:
    worktree_id = _worktree(api, "feature-one")
    slug, zone_id = _board_with_zone(api, "Browser board", label="Review lane")
    errors: list[str] = []
    ada = viewer(browser, f"{stack}/#/boards/{slug}", "Ada", errors)
    bob = viewer(browser, f"{stack}/#/boards/{slug}", "Bob", errors)
    for page in (ada, bob):
        expect(page.get_by_text("Review lane")).to_be_visible(timeout=15_000)
        expect(page.get_by_text("live", exact=True)).to_be_visible(timeout=15_000)
    expect(ada.locator(".orrery-facepile .ant-avatar")).to_have_count(2, timeout=10_000)

    # A card placed through REST shows up on both pages, named after its worktree.
    placed = api.put(f"/api/boards/{slug}/cards/{worktree_id}", json={"x": 700, "y": 50})
    assert placed.status_code == 200, placed.text
    card_id = f"card-{worktree_id}"
    for page in (ada, bob):
        expect(page.get_by_test_id(card_id)).to_be_visible(timeout=15_000)
        expect(page.get_by_test_id(card_id)).to_contain_text("feature-one", timeout=15_000)

    # Ada's cursor, in Bob's page.
    ada.mouse.move(300, 500)
    ada.mouse.move(320, 520, steps=5)
    expect(bob.get_by_test_id("cursor-Ada")).to_be_visible(timeout=10_000)

    # Ada drags the card into the zone: the server moves it there and pins it.
    _drag_into_zone(ada, card_id)

    def moved() -> dict[str, Any] | None:
        cards = api.get(f"/api/boards/{slug}").json()["cards"]
        card = next(c for c in cards if c["worktree_id"] == worktree_id)
        return card if (card["abs_x"], card["abs_y"]) != (700, 50) else None

    card = until(moved, 15.0)
    assert card["zone_id"] == zone_id
    assert card["abs_x"] < 600

    # Bob's page follows: the card is inside the zone there too.
    bob_zone = bob.locator(".orrery-zone").bounding_box()
    assert bob_zone

    def inside_on_bob() -> bool:
        box = bob.get_by_test_id(card_id).bounding_box()
        return bool(box and box["x"] < bob_zone["x"] + bob_zone["width"])

    until(inside_on_bob, 15.0)
    shots = Path(os.environ.get("ORRERY_SCREENSHOTS", tmp_path))
    ada.screenshot(path=str(shots / "board.png"))
    bob.screenshot(path=str(shots / "board-bob.png"))

    # Bob deletes the zone (right-click): the page asks what happens to the pinned card; he keeps
    # it, and both pages still show it, unpinned, where it was.
    zone_box = bob.locator(".orrery-zone").bounding_box()
    assert zone_box
    bob.mouse.click(zone_box["x"] + 20, zone_box["y"] + 10, button="right")
    expect(bob.get_by_text("1 card(s) are pinned to this zone")).to_be_visible(timeout=10_000)
    bob.get_by_role("button", name="Unpin cards (keep them)").click()
    for page in (ada, bob):
        expect(page.get_by_text("Review lane")).to_have_count(0, timeout=10_000)
        expect(page.get_by_test_id(card_id)).to_be_visible()
    after = api.get(f"/api/boards/{slug}").json()
    kept = next(c for c in after["cards"] if c["worktree_id"] == worktree_id)
    assert kept["zone_id"] is None and (kept["abs_x"], kept["abs_y"]) == (
        card["abs_x"],
        card["abs_y"],
    )
    assert after["zones"] == []
    assert errors == []


def test_boards_zones_and_the_trigger_picker_from_the_page(
    browser: Browser, stack: str, api: httpx.Client
) -> None:
    errors: list[str] = []
    page = viewer(browser, f"{stack}/#", "Cy", errors)

    # A new board from the header, then a zone with a picker trigger from the toolbar.
    page.get_by_role("button", name="New board").click()
    page.get_by_label("Name").fill("Made in the page")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"#/boards/made-in-the-page$"), timeout=10_000)
    expect(page.get_by_text("live", exact=True)).to_be_visible(timeout=15_000)
    page.get_by_role("button", name="Add zone").click()
    page.get_by_label("Label").fill("Ship it")
    page.get_by_label("Trigger template (optional)").fill("Ship {{ worktree.name }}")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator(".orrery-zone", has_text="Ship it")).to_be_visible(timeout=10_000)
    expect(page.locator(".orrery-zone", has_text="⚡")).to_be_visible()
    zone = api.get("/api/boards/made-in-the-page").json()["zones"][0]
    assert zone["trigger"]["behavior"] == "show_picker"

    # A card dropped into it: the picker offers the rendered prompt; dismissing closes it.
    worktree_id = _worktree(api, "feature-two")
    centre = {"x": zone["x"] + 100, "y": zone["y"] + 100}
    placed = api.put(f"/api/boards/made-in-the-page/cards/{worktree_id}", json=centre)
    assert placed.status_code == 200, placed.text
    trigger_id = placed.json()["trigger"]["id"]
    picker = page.locator(".ant-modal", has_text="Zone trigger")
    expect(picker).to_be_visible(timeout=15_000)
    expect(picker.locator("textarea")).to_have_value("Ship feature-two", timeout=10_000)
    picker.get_by_role("button", name="Dismiss").click()
    expect(picker).to_be_hidden(timeout=10_000)
    trigger = api.get(f"/api/boards/made-in-the-page/triggers/{trigger_id}").json()
    assert trigger["status"] == "dismissed"
    assert errors == []
