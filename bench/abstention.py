"""The evidence behind docchat's not-found decision, per question, on an indexed corpus.

For each item of a question set: the best chunk's cosine, the keyword coverage of the best
chunks, the words no chunk contains, and whether the item is answerable. Prints the table
and, for a grid of (threshold, keyword relief, coverage) values, false refusals on
answerable items and unanswerable items caught: the data the defaults were chosen from.

    DOCCHAT_DATA_DIR=.bench/pg-data python bench/abstention.py /work/shared/eval/postgres-qa.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.config import load_settings  # noqa: E402
from app.engine.fusion import add_keyword_hits  # noqa: E402
from app.engine.relevance import judge  # noqa: E402
from app.engine.retrieval import RetrievalQuery  # noqa: E402
from app.evaluation.dataset import load_items  # noqa: E402
from app.evaluation.runner import followup_query  # noqa: E402


def features(settings, items, embeddings, store):
    rows = []
    for item in items:
        text = followup_query(item) if len(item.turns) > 1 else item.question
        query = RetrievalQuery.from_settings(text, settings)
        vector = embeddings.embed_query(text)
        candidates = store.search(vector, query.fetch_k, fetch_k=query.fetch_k)
        candidates = add_keyword_hits(candidates, text, vector, store=store, fetch_k=query.fetch_k)
        rows.append((item, query, candidates, judge(query, candidates, store)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qa", nargs="+")
    args = parser.parse_args()
    settings = load_settings()
    from app.backends import embedding_backend
    from vectorstore import Store

    embeddings, store = embedding_backend(settings), Store.open(settings)
    items = [item for path in args.qa for item in load_items(path)]
    rows = features(settings, items, embeddings, store)
    print(f"{'id':<10}{'ans':>4}{'best':>7}{'cover':>7}  unknown")
    for item, _q, _c, r in rows:
        print(f"{item.id:<10}{'y' if item.answerable else 'n':>4}{r.best_score or 0:>7.3f}{r.coverage:>7.2f}  "
              f"{','.join(r.unknown_terms)}")
    answerable = sum(i.answerable for i, *_ in rows)
    print(f"\n{'threshold':>9}{'relief':>8}{'cover':>7}{'false refusals':>16}{'caught':>8}   ({answerable} answerable, "
          f"{len(rows) - answerable} not)")
    for threshold in (0.4, 0.45, 0.5):
        for relief in (0.0, 0.1, 0.15, 0.2, 0.25):
            for cover in (0.6, 0.75, 1.0):
                if relief == 0.0 and cover != 0.75:
                    continue
                false = caught = 0
                for item, query, candidates, _r in rows:
                    q = dataclasses.replace(query, score_threshold=threshold, keyword_relief=relief,
                                            min_keyword_coverage=cover)
                    ok = judge(q, candidates, store).answerable
                    false += item.answerable and not ok
                    caught += (not item.answerable) and not ok
                print(f"{threshold:>9.2f}{relief:>8.2f}{cover:>7.2f}{false:>16}{caught:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
