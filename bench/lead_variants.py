"""How much of the expected answer the quoted lead alone carries, per way of choosing it.

The embedded model's answers open with quoted evidence (DOCCHAT_ANSWER_STYLE=quote_first).
This runs the engine's own retrieval, packing and evidence ranking (no chat model) on the
answerable single-turn items of a question set and prints, per variant of the lead, the mean
answer-phrase recall of the lead alone (docchat eval's lenient word share) and its mean length:

    DOCCHAT_DATA_DIR=.bench/pg-data python bench/lead_variants.py /work/shared/eval/postgres-qa.jsonl

Variants: ``one`` the best sentence (and the next in its paragraph), what shipped first;
``close`` also the runner-up when it scores within QUOTE_RELATIVE of the best (the extractive
answer's rule); ``two`` the best two, whatever their scores.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def leads(finder, evidence) -> dict[str, list]:
    from app.engine.evidence import quoted

    distinct = quoted(evidence[:1]) + [e for e in evidence[1:] if not any(e.n == c.n and e.start == c.start
                                                                           for c in evidence[:1])]
    return {
        "one": [finder.with_next(evidence[0])],
        "close": [finder.with_next(e) for e in quoted(evidence)],
        "two": [finder.with_next(e) for e in distinct[:2]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qa")
    args = parser.parse_args()
    from app.config import load_settings
    from app.engine import Engine
    from app.engine.evidence import EvidenceFinder, quote_block
    from app.evaluation.dataset import load_items
    from app.evaluation.scoring import phrase_recall

    engine = Engine(load_settings())
    recall: dict[str, list[float]] = {}
    length: dict[str, list[int]] = {}
    items = [i for i in load_items(args.qa) if i.answerable and i.answer and len(i.turns) == 1]
    for item in items:
        retrieval = engine._retrieve(item.question, sources=None, k=None, score_threshold=None)
        sources = engine._pack(item.question, [], retrieval).sources
        if not sources:
            continue
        finder = EvidenceFinder(sources, engine.embedder.embed)
        evidence = finder.best([item.question])
        if not evidence:
            continue
        for name, chosen in leads(finder, evidence).items():
            text = quote_block(chosen)
            recall.setdefault(name, []).append(phrase_recall(item.answer, text))
            length.setdefault(name, []).append(len(text))
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{args.qa}: {len(items)} answerable single-turn items ({load})")
    for name in recall:
        print(f"  {name:<6} lead phrase recall {statistics.mean(recall[name]):.3f}   "
              f"mean length {statistics.mean(length[name]):.0f} chars   (n={len(recall[name])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
