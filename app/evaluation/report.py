"""Showing a run: the summary table on screen and the per-question table in a file."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

from app.errors import DocchatError
from app.evaluation.scoring import ItemResult

TABLE_SUFFIXES = (".jsonl", ".csv")


def _num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def summary_table(summary: dict, *, title: str, use_llm: bool) -> str:
    """The figures as a plain-text table for the terminal."""
    followup = "follow-up turns" if use_llm else "follow-up (prev. turn + follow-up, no rewrite)"
    heading = "Retrieval (the sources the model was given)" if use_llm else "Retrieval (top k)"
    lines = [title, "", f"{heading:<48}{'n':>4}{'hit@1':>8}{'hit@5':>8}{'MRR':>8}"]
    for key, label in (("single", "single-turn"), ("followup", followup), ("answerable", "all answerable")):
        f = summary["retrieval"][key]
        lines.append(f"  {label:<46}{f['n']:>4}{_num(f['hit@1']):>8}{_num(f['hit@5']):>8}{_num(f['mrr']):>8}")
    if use_llm:
        lines += [
            "",
            f"{'Citation accuracy (a gold page cited)':<48}{_num(summary['citation_accuracy']):>12}",
            f"{'Answer-phrase recall (share of words)':<48}{_num(summary['answer_phrase_recall']):>12}",
        ]
    if use_llm and summary.get("answers"):
        f = summary["answers"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(f["kinds"].items()))
        problems = ", ".join(f"{k} {v}" for k, v in sorted(f["problems"].items())) or "none"
        lines += [
            "",
            f"Answers ({f['answers']}): {kinds}",
            f"  garbled as the model wrote them: {f['garbled_before_check']} ({problems})",
            f"  garbled as shown to the user:    {f['garbled_shown']}",
            f"  false refusals: {f['false_refusals']} of {f['answerable']} answerable",
        ]
    a = summary["abstention"]
    how = "said not found" if use_llm else "no chunk retrieved: the best was below the threshold"
    lines += [
        "",
        f"Abstention ({how})",
        f"  recall     {a['abstained_right']} of {a['unanswerable']} unanswerable"
        f"{_num(a['recall']):>24}",
        f"  precision  {a['abstained_right']} of {a['abstained_right'] + a['false_abstentions']} abstentions"
        f"{_num(a['precision']):>24}",
        f"  false abstentions on answerable items: {a['false_abstentions']} of {a['answerable']}",
        "",
        f"{'Latency (ms)':<30}{'p50':>10}{'p95':>10}",
    ]
    names = [("retrieve", "retrieval"), ("total", "total")]
    if use_llm:
        names.insert(1, ("first_token", "time to first token"))
    for key, label in names:
        f = summary["latency_ms"][key]
        lines.append(f"  {label:<28}{_ms(f['p50']):>10}{_ms(f['p95']):>10}")
    return "\n".join(lines)


def check_table_path(path: str | Path) -> Path:
    """Refuse an ``--out`` name whose format we cannot tell before running anything."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DocchatError(
            f"--out {path}: unknown table format {path.suffix or '(none)'!r}.",
            fix="Name the file .jsonl (one JSON object per question) or .csv.",
        )
    if not path.parent.is_dir():
        raise DocchatError(f"--out {path}: the folder {path.parent} does not exist.", fix="Create it first.")
    return path


def write_table(results: Sequence[ItemResult], path: str | Path) -> Path:
    """The per-question table: JSONL keeps every field, CSV flattens the lists."""
    path = check_table_path(path)
    rows = [r.row() for r in results]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        if path.suffix.lower() == ".jsonl":
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["id"])
            writer.writeheader()
            for row in rows:
                writer.writerow({key: _cell(value) for key, value in row.items()})
    tmp.replace(path)  # never a half-written table
    return path


def _cell(value) -> str:
    if isinstance(value, list):
        if value and isinstance(value[0], dict):  # retrieved chunks: "1:page.html(0.61)"
            return " | ".join(f"{r['rank']}:{r['source']}({r['score']:.2f})" for r in value)
        return " | ".join("-" if v is None else str(v) for v in value)
    return "" if value is None else str(value)
