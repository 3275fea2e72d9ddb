"""The real thing: `docchat chat` in a subprocess on a loopback port, driven by headless
Debian Chromium through Playwright. Types a question, waits for the streamed answer and its
sources, uploads a file and sees it indexed. Screenshots go into the test's tmp folder.

Prints how long the page took to answer its first question, from process start.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import free_port, wait_for_http

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
QUESTION = "When must the sprocket widget be oiled?"
CORPUS = {
    "widgets.md": "# Widgets\n\n## Maintenance\n\nThe sprocket widget must be oiled every Tuesday. "
    "Use only synthetic oil for the sprocket widget.\n",
    "garden.md": "# Garden\n\n## Watering\n\nTomato plants in the greenhouse are watered every "
    "morning at six with rain water.\n",
}
UPLOADED = "# Boilers\n\nThe boiler pressure should stay between 1.2 and 1.5 bar.\n"


def wait_until_serving(url: str, process: subprocess.Popen, deadline_s: float) -> None:
    """Poll the health endpoint until it answers; fail early if the server died."""
    if wait_for_http(url + "/_stcore/health", process, deadline_s):
        return
    if process.poll() is not None:
        raise AssertionError(f"`docchat chat` exited with {process.returncode}")
    raise AssertionError(f"{url} did not answer within {deadline_s} s")


@pytest.fixture
def indexed(settings, embeddings):
    from ingest.sync import sync

    settings.docs_path.mkdir(parents=True)
    for name, text in CORPUS.items():
        (settings.docs_path / name).write_text(text)
    assert len(sync(settings, embedder=embeddings).added) == len(CORPUS)
    return settings


@pytest.fixture
def app_url(indexed, isolated_env):
    docchat = Path(sys.executable).with_name("docchat")
    port = free_port()
    log = open(isolated_env / "server.log", "w")
    started = time.monotonic()
    process = subprocess.Popen(
        [str(docchat), "chat", "--port", str(port), "--address", "127.0.0.1", "--no-browser"],
        cwd=isolated_env, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, deadline_s=120)
        yield url, started
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_ask_and_upload_in_a_real_browser(app_url, browser, isolated_env, indexed):
    """Ask, see the answer and its sources, upload a file, see it indexed."""
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    try:
        drive(page, app_url, isolated_env, indexed)
    except BaseException:
        page.screenshot(path=str(isolated_env / "failure.png"))  # what the page showed
        print((isolated_env / "server.log").read_text()[-3000:])
        raise


def drive(page, app_url, isolated_env, indexed) -> None:
    url, started = app_url
    shots = isolated_env / "screenshots"
    shots.mkdir()
    remote_requests = []
    page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("data:")
            else remote_requests.append(r.url))  # fmt: skip
    page.goto(url)

    # Ask: type into the chat input, wait for the streamed answer and its sources.
    box = page.get_by_placeholder("Ask about your documents")
    box.wait_for(timeout=120_000)
    box.fill(QUESTION)
    box.press("Enter")
    first_source = page.locator('[data-testid="stExpander"] summary', has_text="[1] widgets.md")
    first_source.wait_for(timeout=240_000)
    page.get_by_role("button", name=QUESTION).wait_for(timeout=60_000)  # saved, listed in the sidebar
    answered_s = time.monotonic() - started
    messages = page.locator('[data-testid="stChatMessage"]')
    assert messages.count() == 2
    answer_text = messages.nth(1).inner_text()
    assert "Sources" in answer_text and "How this was answered" in answer_text
    first_source.click()
    page.get_by_text("oiled every Tuesday").first.wait_for()
    page.get_by_role("button", name="Download the file").first.wait_for()
    page.screenshot(path=str(shots / "answer.png"), animations="disabled")

    # Upload through the real file uploader, then see the file indexed and listed.
    to_upload = isolated_env / "boilers.md"
    to_upload.write_text(UPLOADED)
    page.locator('[data-testid="stExpander"] summary', has_text="Library").click()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(to_upload))
    page.locator('[data-testid="stFileUploader"]').get_by_text("boilers.md").wait_for()  # uploaded
    page.get_by_role("button", name="Add and index").click()
    page.get_by_text("Index updated: 1 added").wait_for(timeout=120_000)
    page.get_by_text("3 documents indexed").wait_for()
    # Listed: the table is drawn on a canvas, so look in the "Search only in" choices.
    page.locator('[data-testid="stMultiSelect"]').click()
    page.get_by_role("option", name="boilers.md").wait_for()
    assert (indexed.docs_path / "boilers.md").read_text() == UPLOADED
    page.screenshot(path=str(shots / "uploaded.png"), animations="disabled")

    assert not remote_requests, f"the page fetched remote URLs: {remote_requests}"
    print(f"\nfirst answer {answered_s:.1f} s after `docchat chat` started; screenshots in {shots}")
