"""The real thing: `docchat chat` in a subprocess on a loopback port, driven by headless
Debian Chromium through Playwright. One server for the module, started with no index: the
tests run in order as a new user would go: the empty state, adding documents (the real
file uploader), a question, its PDF source opened at the page, a stopped answer, the export
of the thread, the Library page, and the phone-sized screen.

Screenshots of each state go into the module's tmp folder (printed); the figures printed
are the ones the README quotes (time to first words and to the end, source click to page).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import converted_model_dir, free_port, openai_server, wait_for_http  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WIDE = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
DOCS = {
    "widgets.md": "# Widgets\n\n## Maintenance\n\nThe sprocket widget must be oiled every Tuesday. "
    "Use only synthetic oil for the sprocket widget.\n",
    "garden.md": "# Garden\n\n## Watering\n\nTomato plants in the greenhouse are watered every "
    "morning at six with rain water.\n",
}
PDF_PAGES = ["Boiler handbook. Read this handbook before you light the boiler for the first time.",
             "Pressure. The boiler pressure should stay between 1.2 and 1.5 bar when the water is cold."]
PDF_QUESTION = "Between which values should the boiler pressure stay?"
STOP_QUESTION = "When must the sprocket widget be oiled?"
FIGURES: dict[str, float] = {}


def make_pdf(path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=14)
    for text in PDF_PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    pdf.output(str(path))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, model_cache_dir):
    folder = tmp_path_factory.mktemp("browser")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    make_pdf(folder / "boiler.pdf")
    (folder / "screenshots").mkdir()
    return folder


@pytest.fixture(scope="module")
def server(workdir, model_cache_dir):
    docchat = Path(sys.executable).with_name("docchat")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCCHAT_")}
    env.update(DOCCHAT_DATA_DIR=str(workdir / "data"), DOCCHAT_MODEL_CACHE_DIR=str(model_cache_dir),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DOCCHAT_LOG_LEVEL="INFO")  # fmt: skip
    log = open(workdir / "server.log", "w")
    process = subprocess.Popen(
        [str(docchat), "chat", "--port", str(port), "--address", "127.0.0.1", "--no-browser", "--no-samples"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_http(url + "/_stcore/health", process, 120):
            raise AssertionError(f"`docchat chat` did not serve {url} (exit code {process.poll()})")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        print(f"\nscreenshots in {workdir / 'screenshots'}; figures: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in FIGURES.items()))  # fmt: skip


@pytest.fixture(scope="module")
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


@pytest.fixture
def page(browser, server, workdir, request):
    """A fresh tab; on failure, its screenshot and the server's log tail."""
    size = PHONE if "phone" in request.node.name else WIDE
    tab = browser.new_page(viewport=size, accept_downloads=True)
    remote = []
    tab.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else remote.append(r.url))
    failed_before = request.session.testsfailed
    yield tab
    tab.screenshot(path=str(workdir / "screenshots" / f"last-{request.node.name}.png"))
    if request.session.testsfailed > failed_before:
        print((workdir / "server.log").read_text()[-3000:])
    tab.close()
    assert not remote, f"the page fetched remote URLs: {remote}"


# The lowest contrast ratio (WCAG) between a button's text and what is behind it.
LOWEST_CONTRAST = """button => {
  const rgba = c => c.match(/[\\d.]+/g).map(Number);
  const behind = e => { for (; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) return c; } return [255, 255, 255]; };
  const lum = c => c.slice(0, 3).map(v => (v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const bg = lum(behind(button));
  const texts = [...button.querySelectorAll('*')].filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()));
  return Math.min(...texts.map(e => { const l = lum(rgba(getComputedStyle(e).color));
    return (Math.max(l, bg) + 0.05) / (Math.min(l, bg) + 0.05); }));
}"""
OPEN_THREAD = '[data-testid="stSidebar"] [class*="st-key-thread-"] [data-testid="stBaseButton-secondary"]'


def open_thread_contrast(page) -> float:
    """The open conversation's entry in the sidebar (title and time): its lowest text contrast."""
    entry = page.locator(OPEN_THREAD)
    entry.wait_for()
    return entry.evaluate(LOWEST_CONTRAST)


def shot(page, workdir: Path, name: str) -> None:
    page.screenshot(path=str(workdir / "screenshots" / f"{name}.png"), animations="disabled")


def test_empty_state_then_documents_added_through_the_page(page, server, workdir):
    page.goto(server)
    page.get_by_text("Welcome to docchat").wait_for(timeout=120_000)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0  # no red error
    box = page.get_by_placeholder("Add documents with the clip, then ask")
    assert box.is_enabled()
    shot(page, workdir, "empty")
    # Dropped on the question box (the Library page's uploader is tested in test_ui_page.py).
    files = [str(workdir / name) for name in [*DOCS, "boiler.pdf"]]
    page.locator('[data-testid="stChatInput"] input[type="file"]').set_input_files(files)
    page.get_by_text("boiler.pdf").first.wait_for()
    # Streamlit keeps Send disabled (and ignores Enter) until every dropped file has uploaded:
    # on a busy machine that takes a moment, so send once it is enabled.
    from playwright.sync_api import expect

    send = page.locator('[data-testid="stChatInputSubmitButton"]')
    expect(send).to_be_enabled(timeout=60_000)
    send.click()
    # One row per file while it is indexed: shown once a file is past "queued" (or, on a quick
    # machine, the end report is there already).
    moving = page.locator('[data-testid="stProgress"]').filter(has_text=re.compile(r" · (parsing|parsed|embedding|writing)"))
    moving.or_(page.get_by_text("Index updated: 3 added")).first.wait_for(timeout=180_000)
    shot(page, workdir, "upload-progress")
    page.get_by_text("Index updated: 3 added").wait_for(timeout=180_000)
    for name in [*DOCS, "boiler.pdf"]:  # how each file ended, on its own line
        page.get_by_text(f"{name} · indexed, ").first.wait_for()  # (twice while the rerun replaces the rows)
    shot(page, workdir, "uploaded")
    page.get_by_text("What would you like to know?").wait_for()
    page.get_by_text("3 documents indexed").wait_for()
    page.locator('[data-testid="stButton"] button', has_text="?").nth(2).wait_for()  # three example questions
    page.get_by_text("Answers by").wait_for()  # which model answers
    shot(page, workdir, "first-screen")
    assert "missing ScriptRunContext" not in (workdir / "server.log").read_text()


def test_ask_and_open_the_pdf_source_at_its_page(page, server, workdir):
    page.goto(server)
    box = page.get_by_placeholder("Ask about your documents")
    box.wait_for(timeout=120_000)
    box.fill(PDF_QUESTION)
    started = time.monotonic()
    box.press("Enter")
    answer = page.locator('[data-testid="stChatMessage"]').nth(1)
    answer.get_by_text("1.5 bar").first.wait_for(timeout=240_000)
    FIGURES["first words"] = time.monotonic() - started
    page.get_by_text("How this was answered").wait_for(timeout=240_000)
    FIGURES["whole answer"] = time.monotonic() - started
    page.get_by_role("button", name="Regenerate").wait_for()  # the saved answer, with its controls
    source = page.get_by_text("boiler.pdf p. 2").first
    source.wait_for()
    # [n] in the answer links to its source.
    assert page.locator('[data-testid="stChatMessage"] a[href^="#source-"]').count() >= 1
    shot(page, workdir, "answer")
    card = page.locator('[data-testid="stVerticalBlock"]').filter(has=page.get_by_text("boiler.pdf p. 2")).last
    clicked = time.monotonic()
    card.get_by_role("button", name="Open").click()
    dialog = page.get_by_role("dialog")
    image = dialog.locator("[data-testid=stImage] img")
    image.wait_for(timeout=60_000)  # the page itself, rendered here ...
    page.wait_for_function("i => i.complete && i.naturalWidth > 600", arg=image.element_handle(), timeout=60_000)  # ... and drawn
    FIGURES["source click to page shown"] = time.monotonic() - clicked
    dialog.get_by_text("boiler.pdf, page 2").wait_for()
    dialog.get_by_text("Download the file").wait_for()
    shot(page, workdir, "source-viewer")
    answered = [line for line in (workdir / "server.log").read_text().splitlines() if "docchat.ui: answered" in line]
    assert len(answered) == 1 and "INFO" in answered[0]  # one line per question, at INFO


def wait_until_idle(page) -> None:
    """Until Streamlit has finished running the page script (its own end-to-end tests wait so)."""
    page.locator("[data-testid=stApp][data-test-script-state=notRunning]").wait_for(timeout=60_000)


def test_stop_keeps_the_partial_answer_and_the_thread_exports(page, server, workdir):
    page.goto(server)
    page.get_by_role("button", name="New conversation").click()
    box = page.get_by_placeholder("Ask about your documents")
    box.fill(STOP_QUESTION)
    box.press("Enter")
    answer = page.locator('[data-testid="stChatMessage"]').nth(1)
    answer.get_by_text("Tuesday").first.wait_for(timeout=240_000)  # the quoted evidence comes first
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped: the answer above is the part that had arrived").wait_for(timeout=60_000)
    assert page.get_by_text("Stopped: the answer above").count() == 1  # shown once, saved or not yet
    assert "Tuesday" in page.locator('[data-testid="stChatMessage"]').nth(1).inner_text()
    assert open_thread_contrast(page) >= 4.5  # the open thread's title and time read well (WCAG AA)
    shot(page, workdir, "stopped")

    wait_until_idle(page)  # the stop's save reruns the page; a click during it can be lost
    page.get_by_text("Rename, export or delete").click()
    wait_until_idle(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Markdown").click()
    exported = Path(download.value.path()).read_text()
    assert f"## {STOP_QUESTION}" in exported and "Tuesday" in exported and "(stopped)" in exported


def test_library_lists_every_document_and_opens_one(page, server, workdir):
    page.goto(server + "/library")
    page.get_by_text("3 documents indexed").wait_for(timeout=120_000)
    shot(page, workdir, "library")
    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    page.mouse.click(grid["x"] + 12, grid["y"] + 52)  # the first row's selection marker (boiler.pdf)
    page.get_by_role("button", name="Open").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("boiler.pdf, page 1").wait_for(timeout=60_000)
    shot(page, workdir, "library-document")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")  # the page reruns as the dialog closes: click after that
    page.get_by_role("button", name="Re-index").click()  # read again, passages replaced
    page.get_by_text("boiler.pdf: re-indexed").wait_for(timeout=120_000)
    # The Library's own uploader: a file it can read and one it cannot, each on its own line.
    (workdir / "notes.md").write_text("# Notes\n\nThe gate code is 4711.\n")
    (workdir / "tool.exe").write_bytes(b"MZ")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(workdir / "notes.md"), str(workdir / "tool.exe")])  # fmt: skip
    page.locator('[data-testid="stFileChip"]', has_text="tool.exe").wait_for()
    add = page.get_by_role("button", name="Add and index")
    from playwright.sync_api import expect

    expect(add).to_be_enabled(timeout=60_000)  # Streamlit holds a form's submit while its files upload
    add.click()
    page.get_by_text("notes.md · indexed, 1 passage").first.wait_for(timeout=120_000)
    page.get_by_text("tool.exe · not added: docchat cannot read .exe files").first.wait_for()
    page.get_by_text("4 documents indexed").wait_for()
    shot(page, workdir, "library-uploaded")


def choose(page, select, option: str) -> None:
    """Pick `option` in a Streamlit select (a react-aria combobox: its chevron opens the list).

    The list closes itself when the sidebar scrolls under it, and the Settings expander's opening
    animation scrolls the sidebar for most of a second (traced: the list opened, the sidebar
    scrolled to bring the focused box into view, the list closed 50 ms later). A user clicks again;
    so does this, until the option can be clicked.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(5):
        select.get_by_role("button", name="Open").click()
        try:
            page.get_by_role("option", name=option).click(timeout=3_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the select's list never stayed open long enough to pick {option!r}")


def test_switch_the_chat_model_to_an_openai_compatible_server(page, server, workdir, openai_server):
    """The real `transformers serve` on loopback: picked in the page, it answers the next question."""
    page.goto(server)
    page.get_by_text("What would you like to know?").wait_for(timeout=120_000)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Settings", exact=True).click()
    sidebar.get_by_text("Change the chat model").click()  # a toggle: the chooser opens inline
    menu = page.locator(".st-key-model-chooser")
    choose(page, menu.get_by_test_id("stSelectbox"), "OpenAI-compatible server")
    wait_until_idle(page)  # the server's fields appear in the rerun the choice starts
    url = menu.get_by_label("Server URL")
    url.fill(openai_server.url)
    url.press("Enter")
    model = menu.get_by_label("Model", exact=True)
    model.fill(openai_server.model_dir)
    model.press("Enter")
    shot(page, workdir, "model-chooser")
    menu.get_by_role("button", name="Use this model").click()
    sidebar.get_by_text("Chat model: openai").wait_for(timeout=60_000)  # from the next question on
    asked = openai_server.log_path.read_text().count("/v1/chat/completions")
    box = page.get_by_placeholder("Ask about your documents")
    box.fill(PDF_QUESTION)
    box.press("Enter")
    page.get_by_text("How this was answered").wait_for(timeout=240_000)
    assert openai_server.log_path.read_text().count("/v1/chat/completions") > asked  # the server answered
    shot(page, workdir, "model-switched")


def test_phone_sized_screen(page, server, workdir):
    page.goto(server)
    page.get_by_text("What would you like to know?").wait_for(timeout=120_000)
    page.get_by_placeholder("Ask about your documents").wait_for()
    page.get_by_text("Answers by").wait_for()
    shot(page, workdir, "phone-first-screen")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing runs off the side


def test_dark_theme_from_the_menu(page, server, workdir):
    page.goto(server)
    page.get_by_text("What would you like to know?").wait_for(timeout=120_000)
    page.locator('[data-testid="stSidebar"] [class*="st-key-thread-"] button').first.click()  # open a conversation
    page.locator('[data-testid="stChatMessage"]').first.wait_for()
    page.locator('[data-testid="stMainMenu"]').click()
    page.get_by_test_id("stMainMenuItem-theme-Dark").click()  # System, Light, Dark
    page.wait_for_function("getComputedStyle(document.querySelector('.stApp')).backgroundColor !== 'rgb(255, 255, 255)'")
    page.keyboard.press("Escape")  # the menu closes
    page.get_by_test_id("stMainMenuItem-theme-Dark").wait_for(state="hidden")
    assert open_thread_contrast(page) >= 4.5  # the open thread's title and time, in the dark theme too
    shot(page, workdir, "dark")
