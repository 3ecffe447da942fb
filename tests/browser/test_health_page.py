"""The UI as a person sees it: `orrery up` serves the page, which shows every part healthy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from orrery.runtime.infra.ports import free_port
from playwright.sync_api import Browser, expect


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture
def stack(tmp_path: Path, repo_root: Path) -> Iterator[str]:
    assert (repo_root / "web" / "dist" / "index.html").is_file(), "build the UI: make test does"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORRERY_")},
        "ORRERY_HOME": str(tmp_path),
        "ORRERY_PORT": str(port),
        "ORRERY_NATS_PORT": str(free_port()),
        "ORRERY_POSTGRES_PORT": str(free_port()),
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "orrery"), "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(url):  # listening; health itself is the page's job to show
            assert proc.poll() is None and time.monotonic() < deadline, "orrery up failed"
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out


def test_page_shows_every_component_healthy(browser: Browser, stack: str, tmp_path: Path) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(stack)
    expect(page.get_by_text("Orrery", exact=True).first).to_be_visible()
    for name in ("nats", "postgres", "canvas", "sessions", "worktrees", "gateway"):
        tag = page.locator(".ant-tag", has_text=name)
        # antd's success tags are green; polling turns them green once heartbeats arrive.
        expect(tag).to_have_class(re.compile(r"\bant-tag-green\b"), timeout=15_000)
    expect(page.locator(".react-flow")).to_be_visible()
    shots = Path(os.environ.get("ORRERY_SCREENSHOTS", tmp_path))
    page.screenshot(path=str(shots / "health.png"))
    assert errors == []
