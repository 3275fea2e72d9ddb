"""Source code, JSON and YAML.

Code: split on the language's own boundaries (classes, functions; LangChain's per-language
separators) into sections headed "lines 12-40: name", the name being the first function or
class Pygments finds in the piece. JSON (the standard library's parser) and YAML (PyYAML's
safe loader): one line per value, "key.path[2].name: value", a section per top-level key.
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest.documents import ParsedDocument, Section, UnreadableFile

CODE_LANGUAGES = {
    ".py": "python", ".js": "js", ".mjs": "js", ".jsx": "js", ".ts": "ts", ".tsx": "ts", ".java": "java",
    ".kt": "kotlin", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".hpp": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php", ".scala": "scala", ".swift": "swift",
    ".lua": "lua", ".pl": "perl", ".r": "r", ".hs": "haskell", ".ex": "elixir", ".exs": "elixir",
    ".ps1": "powershell", ".proto": "proto", ".sol": "sol",
}
MAX_CODE_LINE_AVERAGE = 300
MAX_VALUES = 200_000  # YAML aliases can make a small file name millions of values: refused past this


def parse_code(text: str, name: str, chunk_size: int) -> ParsedDocument:
    """Pieces on syntax boundaries, each headed with its line range and first symbol."""
    from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

    from ingest.loaders import stem_title

    lines = text.count("\n") + 1
    if len(text) / lines > MAX_CODE_LINE_AVERAGE:  # jquery.min.js in a documentation folder: noise to search
        raise UnreadableFile(f"minified or generated code (lines average {len(text) // lines:,} characters): "
                             "not ingested; --exclude it to stop this message")
    language = Language(CODE_LANGUAGES[Path(name).suffix.lower()])
    splitter = RecursiveCharacterTextSplitter.from_language(language, chunk_size=chunk_size, chunk_overlap=0)
    sections, offset = [], 0
    for piece in splitter.split_text(text):
        start = text.find(piece, offset)
        start = offset if start < 0 else start
        first = text.count("\n", 0, start) + 1
        last = first + piece.count("\n")
        offset = start + len(piece)
        symbol = _first_symbol(piece, name)
        where = f"lines {first}\u2013{last}" if last > first else f"line {first}"
        sections.append(Section(piece, f"{where}: {symbol}" if symbol else where))
    return ParsedDocument(Path(name).name or stem_title(name), sections)


def _first_symbol(piece: str, name: str) -> str | None:
    from pygments.lexers import get_lexer_for_filename
    from pygments.token import Name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_for_filename(name, stripnl=False)
    except ClassNotFound:
        return None
    for token, value in lexer.get_tokens(piece):
        if token in (Name.Function, Name.Class) or token in Name.Function or token in Name.Class:
            return value
    return None


def parse_json(text: str, name: str) -> ParsedDocument:
    from ingest.loaders import stem_title

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    return ParsedDocument(stem_title(name), _value_sections(data))


def parse_yaml(text: str, name: str) -> ParsedDocument:
    import yaml

    from ingest.loaders import stem_title

    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UnreadableFile(f"invalid YAML ({getattr(exc, 'problem', None) or exc}{where})") from None
    sections = []
    for data in documents:
        sections += _value_sections(data)
    return ParsedDocument(stem_title(name), sections)


def _value_sections(data) -> list[Section]:
    """A section per top-level key (or item) holding "path: value" lines for every leaf."""
    if not isinstance(data, (dict, list)):
        return [Section(str(data))] if data is not None else []
    counter = [0]
    items = data.items() if isinstance(data, dict) else enumerate(data)
    sections = []
    for key, value in items:
        path = str(key) if isinstance(data, dict) else f"[{key}]"
        lines = list(_leaves(value, path, counter))
        sections.append(Section("\n".join(lines), path))
    return sections


def _leaves(value, path: str, counter: list[int]):
    stack = [(path, value)]
    while stack:  # iterative: nesting depth is the file's choice
        path, value = stack.pop()
        counter[0] += 1
        if counter[0] > MAX_VALUES:
            raise UnreadableFile(f"more than {MAX_VALUES:,} values (YAML aliases expanding?): refused")
        if isinstance(value, dict):
            stack += reversed([(f"{path}.{k}", v) for k, v in value.items()])
        elif isinstance(value, list):
            stack += reversed([(f"{path}[{i}]", v) for i, v in enumerate(value)])
        else:
            yield f"{path}: {value}"
