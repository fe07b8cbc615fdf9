"""End to end in a real browser (Debian chromium + Playwright): upload the example, reconstruct, click an include
point on the moving object, see the mask change, choose a preset, render, and play the video.

Screenshots go to ``artifacts/app/`` (git-ignored). Skipped when /usr/bin/chromium is absent.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from app_fixtures import running_app

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "app"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "synthetic-room.mp4"
TIMEOUT_MS = 240_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium")


def set_number(page, elem_id: str, value):
    """Type into a slider's number box (what a user does to enter an exact value)."""
    from playwright.sync_api import expect

    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    box.press("Tab")  # blur as well: the value must reach the slider's state before the upload event reads it
    expect(page.locator(f"#{elem_id} input[type=range]")).to_have_value(str(value))


def dynamic_pixels(page) -> int:
    text = page.locator("#mask_info").inner_text()
    return int(re.search(r"(\d+) dynamic px", text).group(1))


def test_upload_reconstruct_click_render_play(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = json.loads(EXAMPLE.with_suffix(".json").read_text())["object_points"][0]
    with running_app(tmp_path / "sessions") as (url, store), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(url)

        # 1 clip: a small version of the example keeps the test quick
        page.get_by_text("Advanced").click()
        set_number(page, "max_frames", 10)
        set_number(page, "max_side", 160)
        page.locator("#upload input[type=file]").set_input_files(str(EXAMPLE))
        expect(page.locator("#clip_info")).to_contain_text("kept 10 frames")
        expect(page.locator("#reconstruct")).to_be_enabled()
        page.screenshot(path=str(ARTIFACTS / "1-clip.png"), full_page=True)

        # 2 reconstruct
        page.locator("#reconstruct").click()
        expect(page.locator("#mask_info")).to_contain_text("dynamic px")
        page.screenshot(path=str(ARTIFACTS / "2-reconstructed.png"), full_page=True)
        before = dynamic_pixels(page)

        # 3 include point on the moving object (position from the example's sidecar)
        image = page.locator("#mask_image img")
        page.wait_for_function("() => { const i = document.querySelector('#mask_image img');"
                               " return i && i.complete && i.naturalWidth > 0; }")  # clicks map via its size
        box = image.bounding_box()  # its size; the click position is taken relative to the element at click time
        image.click(position={"x": target[0] * box["width"], "y": target[1] * box["height"]})
        expect(page.locator("#mask_info")).to_contain_text("1 point(s)")
        after = dynamic_pixels(page)
        page.screenshot(path=str(ARTIFACTS / "3-clicked.png"), full_page=True)
        (session,) = store.sessions()
        x, y, label = session.editor.points(0)[0]
        h, w = session.scene.hw
        assert label == 1 and abs(x - target[0] * (w - 1)) <= 2 and abs(y - target[1] * (h - 1)) <= 2
        assert after != before, "the click changed the mask"

        # 4 preset, few frames, render, play
        page.locator("#preset input").click()
        page.get_by_role("option", name="orbit", exact=True).click()
        expect(page.locator("#preset_md")).to_contain_text("Orbit")  # the preset's sliders have arrived
        set_number(page, "path-frames", 4)
        page.locator("#render").click()
        video = page.locator("#result_video video")
        expect(video).to_have_count(1)
        page.wait_for_function("() => { const v = document.querySelector('#result_video video');"
                               " return v && v.readyState >= 2 && v.videoWidth > 0; }")
        expect(page.locator("#render_info")).to_contain_text(re.compile(r"(^|\s)4 frames at 160x90"), timeout=5000)
        page.screenshot(path=str(ARTIFACTS / "4-rendered.png"), full_page=True)
        assert (session.folder / "render.mp4").is_file()

        page.close()  # closing the tab ends the session: its folder goes
        deadline = time.monotonic() + 30
        while session.folder.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not session.folder.exists() and len(store) == 0
        browser.close()
