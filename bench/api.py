"""API benchmark: what `docchat serve` adds over calling the Engine, and search under 8 clients.

    python bench/api.py                      # scripted chat model: the API's own overhead, isolated
    python bench/api.py --model packaged     # the packaged SmolLM2 (DOCCHAT_MAX_NEW_TOKENS=16)
    python bench/api.py --clients 8 --seconds 20 --data DIR

The server is the API app (``create_app`` + uvicorn, as `docchat serve` runs it) in a separate
process on loopback; the bench process is the client. First-token time is measured the same
way on both sides: from the call to the first answer text, via ``Engine.stream`` in-process and
via the `openai` client streaming from the server, alternating one call each so that load
changes on the shared machine hit both alike. With the scripted model (a stand-in that streams
a fixed reply at once) the difference is the API's own cost; with the packaged model the model
dominates and the difference is lost in its variance.

The index defaults to the bundled samples/ ingested into .bench/api-data (built on first run);
--data points at any docchat data folder (e.g. the PostgreSQL docs of bench/ingest.py).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.query import line, percentile  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".bench" / "api-data"
SCRIPTED_REPLY = "docchat keeps the index under the data folder [1]; rebuild it with docchat ingest --full [2]."
# Questions the bundled samples answer (each retrieves chunks above the threshold), so that
# the packaged model really generates: an abstention streams its fixed sentence at once.
QUESTIONS = [
    "Where does docchat keep my data?",
    "Which model backends can docchat use?",
    "How do I add documents?",
    "What is the default chat model?",
    "How do I use OpenAI?",
    "Which embedding model does docchat use?",
    "Can I use Ollama with docchat?",
    "Does docchat send my documents to the internet?",
    "How do I install docchat?",
    "What happens when the documents do not answer?",
]
PACKAGED_MAX_NEW_TOKENS = 16


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bench_settings(data: Path, model: str):
    from app.config import load_settings

    extra = {"max_new_tokens": PACKAGED_MAX_NEW_TOKENS, "temperature": 0.0} if model == "packaged" else {}
    return load_settings(env_file=None, data_dir=data, **extra)


def chat_backend(settings, model: str):
    """The scripted stand-in (tests/scripted.py), or None for the configured (packaged) model."""
    if model != "scripted":
        return None
    from tests.scripted import ScriptedBackend, ScriptedChat

    return ScriptedBackend(settings, ScriptedChat(SCRIPTED_REPLY))


def ensure_index(data: Path) -> None:
    """Ingest samples/ into ``data`` unless it already holds an index."""
    from vectorstore import layout

    settings = bench_settings(data, "scripted")
    if layout.current_generation(settings.index_path) is not None:
        return
    from ingest.sync import sync

    print(f"building the index in {data} from samples/ ...", flush=True)
    sync(settings, [REPO / "samples"])


# ---------------------------------------------------------------- the server process
def serve(port: int, data: Path, model: str) -> None:
    """`--serve`: the API app on loopback, the way `docchat serve` runs it (in this process)."""
    import uvicorn

    from app.api.app import create_app
    from app.engine import Engine

    settings = bench_settings(data, model)
    engine = Engine(settings, chat=chat_backend(settings, model))
    engine.prepare()  # models and index loaded before the first request
    uvicorn.run(create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning")


def start_server(data: Path, model: str) -> tuple[subprocess.Popen, str]:
    from tests.servers import free_port, wait_for_http

    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--data", str(data),
                                "--model", model], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    if not wait_for_http(url + "/v1/models", process, deadline_s=300):
        process.kill()
        raise SystemExit("the API server did not start")
    return process, url


# ---------------------------------------------------------------- first token
def direct_first_token_ms(engine, question: str) -> float:
    start = time.perf_counter()
    first = None
    for event in engine.stream(question):
        if first is None and type(event).__name__ == "Token" and event.text:
            first = time.perf_counter()
        if type(event).__name__ == "Done" and not event.answer.sources:
            print(f"  (not answered from the documents: {question!r})")
    return (first - start) * 1000


def api_first_token_ms(client, question: str) -> float:
    start = time.perf_counter()
    first = None
    for chunk in client.chat.completions.create(model="docchat", stream=True,
                                                messages=[{"role": "user", "content": question}]):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    return (first - start) * 1000


def bench_first_token(engine, client, rounds: int) -> tuple[list[float], list[float]]:
    for question in QUESTIONS[:2]:  # warm both paths: caches, connection, first-call costs
        direct_first_token_ms(engine, question)
        api_first_token_ms(client, question)
    direct, api = [], []
    for question in itertools.islice(itertools.cycle(QUESTIONS), rounds):
        direct.append(direct_first_token_ms(engine, question))
        api.append(api_first_token_ms(client, question))
    return direct, api


# ---------------------------------------------------------------- concurrent search
def search_load(url: str, clients: int, seconds: float) -> tuple[list[float], int, float]:
    """``clients`` threads posting /v1/search back to back for ``seconds``: latencies, errors, elapsed."""
    import httpx

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client_loop(offset: int) -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=60) as http:
            for question in itertools.islice(itertools.cycle(QUESTIONS), offset, None):
                if time.perf_counter() >= stop_at:
                    return
                start = time.perf_counter()
                reply = http.post("/v1/search", json={"query": question})
                took = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(took)
                    errors += reply.status_code != 200

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def report_load(name: str, latencies: list[float], errors: int, elapsed: float) -> None:
    print(f"  {name:<28} {len(latencies) / elapsed:7.1f} requests/s   p50 {percentile(latencies, 50):7.1f} ms"
          f"   p95 {percentile(latencies, 95):7.1f} ms   ({len(latencies)} requests, {errors} errors)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["scripted", "packaged"], default="scripted")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=40, help="first-token measurements per side")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each search load run")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.serve:
        serve(args.serve, args.data, args.model)
        return 0

    import openai

    from app.engine import Engine

    print(f"start: {uptime()}")
    ensure_index(args.data)
    process, url = start_server(args.data, args.model)
    try:
        settings = bench_settings(args.data, args.model)
        engine = Engine(settings, chat=chat_backend(settings, args.model))
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
        print(f"\nfirst token, {args.model} chat model, {args.rounds} questions each, alternating:")
        direct, api = bench_first_token(engine, client, args.rounds)
        print(line("Engine.stream (in-process)", direct, "ms"))
        print(line("API, openai client, SSE", api, "ms"))
        overhead = [a - d for a, d in zip(api, direct)]
        print(f"  {'API overhead (paired)':<28} median {statistics.median(overhead):7.1f} ms   "
              f"p95 {percentile(overhead, 95):7.1f} ms")
        print(f"\nPOST /v1/search (retrieval only), {args.seconds:g} s per run:")
        report_load("1 client", *search_load(url, 1, args.seconds))
        report_load(f"{args.clients} clients", *search_load(url, args.clients, args.seconds))
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"\nend:   {uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
