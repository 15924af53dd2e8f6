"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright, against
a real gateway and the fake ComfyUI. Skipped where Chromium or Playwright is not installed.

Screenshots are saved in the test's tmp_path (`web-page-*.png`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, Gateway
from tests.fake_comfy import FakeComfyUI

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

async_api = pytest.importorskip("playwright.async_api", reason="Playwright for Python is not installed")
if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)", allow_module_level=True)

expect = async_api.expect
WAIT_MS = 20_000


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def page(browser: Any, gateway: Gateway) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 1000})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)  # API errors
    await page.goto(str(gateway.client.make_url("/")))
    yield page
    await context.close()
    assert problems == []


async def enter_key(page: Any, key: str = API_KEY) -> None:
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Use key").click()


async def test_generate_two_images_watch_them_and_find_them_in_the_gallery(
    page: Any, gateway: Gateway, fake: FakeComfyUI, tmp_path: Path,
) -> None:
    await enter_key(page)
    await page.locator('label[data-slug="example_01"]').click()
    await page.get_by_label("Count").fill("2")
    fake.stall = True  # the first job hangs in ComfyUI: one card shows it running, the other waiting
    await page.get_by_role("button", name="Generate").click()

    jobs = page.locator("#jobs .job")
    await expect(jobs).to_have_count(2)
    await expect(page.locator('#jobs .job[data-status="processing"]')).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator('#jobs .job[data-status="pending"]')).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator("#jobs .job progress")).to_have_count(2)
    await page.screenshot(path=tmp_path / "web-page-progress.png", full_page=True)

    fake.release()
    await expect(page.locator('#jobs .job[data-status="done"]')).to_have_count(2, timeout=WAIT_MS)
    job_ids = [await card.get_attribute("data-job-id") for card in await jobs.all()]
    records = [await gateway.job(job_id) for job_id in job_ids]
    for card, record in zip(await jobs.all(), records, strict=True):
        result = card.locator("a.result")
        await expect(result).to_have_attribute("href", record["result"]["image_url"])
        await expect(card.locator(".note")).to_have_text(f"Seed {record['result']['seed']}")
        assert await result.locator("img").evaluate("img => img.complete && img.naturalWidth > 0")

    gallery = page.locator("#gallery li a")
    await expect(gallery).to_have_count(2, timeout=WAIT_MS)
    shown = {await link.get_attribute("href") for link in await gallery.all()}
    assert shown == {r["result"]["image_url"] for r in records}
    await page.screenshot(path=tmp_path / "web-page-done.png", full_page=True)

    await page.set_viewport_size({"width": 390, "height": 844})  # a phone
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.screenshot(path=tmp_path / "web-page-phone.png", full_page=True)


async def test_api_errors_are_shown_as_readable_messages(page: Any, gateway: Gateway) -> None:
    await enter_key(page, "not-the-key")
    await expect(page.get_by_role("alert")).to_have_text("Error 403: the API key is not valid")

    await enter_key(page)
    await expect(page.get_by_role("alert")).to_be_hidden()
    await page.locator('label[data-slug="example_01"]').click()
    await page.get_by_label("Width").fill("100")
    await page.get_by_label("Height").fill("64")
    await page.get_by_role("button", name="Generate").click()
    await expect(page.get_by_role("alert")).to_have_text("Error 400: width: must be a multiple of 8")
    await expect(page.get_by_label("Width")).to_have_attribute("aria-invalid", "true")


async def test_the_key_is_remembered_and_a_job_can_be_cancelled(
    page: Any, gateway: Gateway, fake: FakeComfyUI,
) -> None:
    await enter_key(page)
    await page.reload()
    await expect(page.get_by_label("API key")).to_have_value(API_KEY)
    await expect(page.locator('label[data-slug="example_01"]')).to_be_visible()
    fake.stall = True
    await page.get_by_role("button", name="Generate").click()
    card = page.locator("#jobs .job")
    await expect(card).to_have_attribute("data-status", "processing", timeout=WAIT_MS)
    await card.get_by_role("button", name="Cancel").click()
    await expect(card).to_have_attribute("data-status", "failed", timeout=WAIT_MS)
    await expect(card.locator(".error")).to_have_text("cancelled")
    job_id = await card.get_attribute("data-job-id")
    assert (await gateway.job(str(job_id)))["error"] == "cancelled"
