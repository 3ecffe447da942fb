"""Signing in from the page, with the gateway requiring it: a fresh deployment opens on "create
the first owner"; the owner is signed in and named in the header; signing out returns to the
sign-in form, a wrong password is said so, the right one signs in again; a viewer gets no edit
controls."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import Browser, expect

if TYPE_CHECKING:  # mypy sees the repo root; pytest puts these directories on sys.path
    from tests.system.stackctl import start, stop, wait_healthy
else:
    from system.stackctl import start, stop, wait_healthy

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[str]:
    assert (repo_root / "web" / "dist" / "index.html").is_file(), "build the UI: make test does"
    proc, env = start(tmp_path_factory.mktemp("signin") / "home", extra={"ORRERY_AUTH": "required"})
    port = int(env["ORRERY_PORT"])
    try:
        wait_healthy(proc, port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_first_owner_then_sign_out_and_in_again(browser: Browser, stack: str) -> None:
    page = browser.new_page()
    page.goto(stack)
    expect(page.get_by_text("Create the first owner")).to_be_visible(timeout=20_000)
    page.get_by_label("Name").fill("Ada")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name=re.compile("Create owner")).click()
    expect(page.get_by_text("Ada · owner")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="New board")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=20_000)
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("wrong email or password")).to_be_visible(timeout=20_000)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Ada · owner")).to_be_visible(timeout=20_000)
    page.close()


def test_a_viewer_sees_no_edit_controls(browser: Browser, stack: str) -> None:
    with httpx.Client(base_url=stack, timeout=30) as api:
        owner = api.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {owner.json()['access_token']}"}
        made = api.post(
            "/api/users",
            headers=headers,
            json={
                "email": "vic@example.com",
                "password": PASSWORD,
                "name": "Vic",
                "role": "viewer",
            },
        )
        assert made.status_code == 201, made.text
    page = browser.new_page()
    page.goto(stack)
    page.get_by_label("Email").fill("vic@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Vic · viewer")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="New board")).to_have_count(0)
    page.close()
