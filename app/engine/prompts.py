"""Prompt templates, read from the files in ``settings.prompts_dir``.

Prompts are files so that they can be read, reviewed and tuned without touching code.
Templates use ``str.format`` fields (``{question}``); values are inserted as they are, so
braces inside documents cannot break a template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.errors import ConfigError

NAMES = (
    "system",
    "agent_system",
    "general_system",
    "rewrite",
    "context",
    "chunk",
    "no_context",
    "not_found",
    "general_knowledge",
    "tool_result",
    "quoted",
    "widen",
)


@dataclass(frozen=True)
class Prompts:
    """Every template the engine uses, loaded once per Engine."""

    system: str
    agent_system: str
    general_system: str
    rewrite: str
    context: str
    chunk: str
    no_context: str
    not_found: str
    general_knowledge: str
    tool_result: str
    quoted: str
    widen: str

    def system_prompt(self) -> str:
        return self.system.format(not_found=self.not_found)

    def agent_system_prompt(self) -> str:
        return self.agent_system.format(not_found=self.not_found)


def load_prompts(prompts_dir: Path) -> Prompts:
    """Read every template from ``prompts_dir``; a missing file names itself and the setting."""
    texts = {}
    for name in NAMES:
        path = Path(prompts_dir) / f"{name}.txt"
        try:
            texts[name] = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"Prompt file {path} cannot be read ({exc.strerror or exc}).",
                fix="Point DOCCHAT_PROMPTS_DIR at a folder holding the prompt files "
                f"({', '.join(n + '.txt' for n in NAMES)}), or unset it to use the built-in ones.",
            ) from exc
    return Prompts(**texts)
