"""Time from `docchat chat` start to the page answering its first question, in Chromium.

usage: python measure_ui.py DATA_DIR MODEL_CACHE_DIR QUESTION SHOT.png
Prints: server_ready_s, first_answer_s (from process start until the answer and its sources
are on the page and the thread is saved).
"""
import os, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from playwright.sync_api import sync_playwright

data, models, question, shot = sys.argv[1:5]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
env = {**os.environ, "DOCCHAT_DATA_DIR": data, "DOCCHAT_MODEL_CACHE_DIR": models, "HF_HUB_OFFLINE": "1"}
docchat = Path(sys.executable).with_name("docchat")
t0 = time.monotonic()
proc = subprocess.Popen([str(docchat), "chat", "--port", str(port), "--address", "127.0.0.1", "--no-browser"],
                        env=env, stdout=open(Path(data).parent / "server.log", "w"), stderr=subprocess.STDOUT)
url = f"http://127.0.0.1:{port}"
try:
    while True:
        assert proc.poll() is None, "server exited"
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=1).status == 200: break
        except OSError:
            time.sleep(0.1)
    ready = time.monotonic() - t0
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = b.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url)
        box = page.get_by_placeholder("Ask about your documents"); box.wait_for(timeout=300_000)
        loaded = time.monotonic() - t0
        box.fill(question); box.press("Enter")
        page.locator('[data-testid="stExpander"] summary', has_text="[1]").wait_for(timeout=300_000)
        page.get_by_role("button", name=question[:50]).wait_for(timeout=300_000)
        answered = time.monotonic() - t0
        page.locator('[data-testid="stExpander"] summary', has_text="[1]").first.click()
        page.get_by_role("button", name="Download the file").first.wait_for()
        page.screenshot(path=shot, animations="disabled")
        b.close()
    print(f"server_ready_s={ready:.1f} page_loaded_s={loaded:.1f} first_answer_s={answered:.1f}")
finally:
    proc.terminate(); proc.wait(timeout=30)
