"""The eval scorer on small hand-made question sets whose figures are known."""

from __future__ import annotations

import json

import pytest

from app.errors import DocchatError
from app.evaluation.dataset import QAItem, load_items
from app.evaluation.report import summary_table, write_table
from app.evaluation.runner import followup_query, is_abstention
from app.evaluation.scoring import (
    ItemResult,
    Retrieved,
    gold_rank,
    matches_gold,
    percentile,
    phrase_recall,
    summarize,
)


def item(id, gold=("a.html",), turns=("q?",), answer="the default is btree", answerable=True):
    return QAItem(id=id, turns=tuple(turns), gold=tuple(gold), answer=answer, answerable=answerable)


def result(qa, sources, *, answer=None, cited=(), abstained=False, ms=10.0):
    retrieved = [Retrieved(rank=i, source=s, score=0.5, cited=i in cited) for i, s in enumerate(sources, 1)]
    return ItemResult(qa, qa.question, retrieved, abstained, answer, [ms], [ms], [ms])


# -- matching gold pages to sources ---------------------------------------------------


@pytest.mark.parametrize(
    "source, gold, expected",
    [
        ("sql-insert.html", "sql-insert.html", True),
        ("html/sql-insert.html", "sql-insert.html", True),  # ingested the folder above
        ("docs/v15/html/sql-insert.html", "sql-insert.html", True),
        ("guides/setup.md", "guides/setup.md", True),  # gold names a subfolder
        ("x/guides/setup.md", "guides/setup.md", True),
        ("setup.md", "guides/setup.md", False),  # a different file of the same name
        ("other/setup.md", "guides/setup.md", False),
        ("my-sql-insert.html", "sql-insert.html", False),  # whole path components only
        ("sql-insert.html.bak", "sql-insert.html", False),
        ("html\\sql-insert.html", "sql-insert.html", True),  # Windows separators
        ("./sql-insert.html", "sql-insert.html", True),
    ],
)
def test_gold_matches_by_file_name_relative_to_the_root(source, gold, expected):
    assert matches_gold(source, gold) is expected


def test_gold_rank_is_the_first_gold_source_any_gold_entry_counts():
    sources = ["x.html", "y.html", "alt.html", "main.html"]
    assert gold_rank(sources, ["main.html", "alt.html"]) == 3
    assert gold_rank(sources, ["nope.html"]) is None
    assert gold_rank([], ["main.html"]) is None


def test_phrase_recall_is_the_share_of_phrase_words_in_the_answer():
    assert phrase_recall("The default method is btree", "By default the method is BTREE [1].") == 1.0
    assert phrase_recall("normally each 16 MB in size", "WAL segments are 16 MB.") == pytest.approx(2 / 6)
    assert phrase_recall("anything", "") == 0.0


def test_percentile_interpolates():
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([5], 95) == 5
    assert percentile([], 50) is None
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


# -- the summary figures ---------------------------------------------------------------


def test_retrieval_figures_hit_miss_and_mrr():
    results = [
        result(item("hit1"), ["a.html", "b.html"]),  # rank 1
        result(item("hit3"), ["b.html", "c.html", "a.html"]),  # rank 3
        result(item("hit6"), ["b", "c", "d", "e", "f", "a.html"]),  # rank 6: a miss at 5
        result(item("miss"), ["b.html"]),
    ]
    figures = summarize(results)["retrieval"]["single"]
    assert figures["n"] == 4
    assert figures["hit@1"] == 0.25
    assert figures["hit@5"] == 0.5
    assert figures["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 6) / 4)


def test_followups_are_scored_apart_and_unanswerables_left_out_of_retrieval():
    results = [
        result(item("single"), ["a.html"]),
        result(item("follow", turns=("first?", "and then?")), ["z.html", "a.html"]),
        result(item("none", gold=(), answer=None, answerable=False), ["a.html"], abstained=True),
    ]
    summary = summarize(results)
    assert summary["retrieval"]["single"] == {"n": 1, "hit@1": 1.0, "hit@5": 1.0, "mrr": 1.0}
    assert summary["retrieval"]["followup"] == {"n": 1, "hit@1": 0.0, "hit@5": 1.0, "mrr": 0.5}
    assert summary["retrieval"]["answerable"]["n"] == 2


def test_abstention_precision_recall_and_false_abstentions():
    unanswerable = [item(f"u{i}", gold=(), answer=None, answerable=False) for i in range(4)]
    answerable = [item(f"a{i}") for i in range(5)]
    results = [result(q, [], abstained=i < 3) for i, q in enumerate(unanswerable)]  # 3 of 4 right
    results += [result(q, ["a.html"], abstained=i < 1) for i, q in enumerate(answerable)]  # 1 false
    a = summarize(results)["abstention"]
    assert (a["abstained_right"], a["unanswerable"], a["false_abstentions"], a["answerable"]) == (3, 4, 1, 5)
    assert a["recall"] == 0.75
    assert a["precision"] == 0.75


def test_citation_accuracy_counts_only_cited_sources():
    results = [
        result(item("cites-gold"), ["b.html", "a.html"], answer="the default is btree [2]", cited=(2,)),
        result(item("cites-other"), ["b.html", "a.html"], answer="it is btree [1]", cited=(1,)),
    ]
    summary = summarize(results)
    assert summary["retrieval"]["single"]["hit@5"] == 1.0  # both retrieved the gold page...
    assert summary["citation_accuracy"] == 0.5  # ...but only one cited it
    assert summary["answer_phrase_recall"] == pytest.approx((1 + 2 / 4) / 2)  # "is", "btree" of 4 words


def test_no_llm_run_has_no_answer_figures():
    summary = summarize([result(item("q"), ["a.html"])])
    assert summary["citation_accuracy"] is None and summary["answer_phrase_recall"] is None
    text = summary_table(summary, title="t", use_llm=False)
    assert "Citation" not in text and "first token" not in text
    assert "single-turn" in text and "1.00" in text


def test_latency_percentiles_cover_every_engine_call():
    results = [result(item(f"q{i}"), ["a.html"], ms=float(ms)) for i, ms in enumerate([10, 20, 30, 40, 50])]
    latency = summarize(results)["latency_ms"]["retrieve"]
    assert latency["p50"] == 30 and latency["n"] == 5


# -- the engine's definitions ------------------------------------------------------------


class FakeAnswer:  # the two fields is_abstention reads
    def __init__(self, text, grounded, sources):
        self.text, self.grounded, self.sources = text, grounded, sources


def test_abstention_follows_the_engine_definition():
    not_found = "I could not find the answer to that in your documents."
    assert is_abstention(FakeAnswer(not_found, False, []), not_found)
    assert is_abstention(FakeAnswer("Paris. (General knowledge)", False, []), not_found)
    assert is_abstention(FakeAnswer("Sorry: i could not find the answer to that in your documents.", True, ["s"]), not_found)
    assert not is_abstention(FakeAnswer("The default is btree [1].", True, ["s"]), not_found)


def test_no_llm_followup_query_joins_the_previous_turn():
    qa = item("f", turns=("How do I build an index concurrently?", "And drop one?"))
    assert followup_query(qa) == "How do I build an index concurrently? And drop one?"


# -- reading question sets and writing tables --------------------------------------------


def write_lines(path, *objects):
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in objects) + "\n")
    return path


def test_load_items_reads_single_multi_turn_and_unanswerable(tmp_path):
    qa = write_lines(
        tmp_path / "qa.jsonl",
        {"id": "s", "question": "Q?", "gold": ["a.html"], "answer": "x", "answerable": True},
        "",
        {"id": "m", "turns": ["T1?", "T2?"], "gold": ["b.html"], "answer": "y", "answerable": True},
        {"id": "u", "question": "U?", "gold": [], "answer": None, "answerable": False},
    )
    items = load_items(qa)
    assert [(i.id, i.kind, i.question) for i in items] == [
        ("s", "single", "Q?"),
        ("m", "followup", "T2?"),
        ("u", "unanswerable", "U?"),
    ]


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ('{"id": "x", "gold": ["a"], "answerable": true}', "needs a non-empty `question`"),
        ('{"id": "x", "question": "q", "gold": [], "answerable": true}', "needs at least one gold page"),
        ('{"id": "x", "question": "q", "gold": "a.html", "answerable": true}', "must be a list"),
    ],
)
def test_bad_question_sets_name_the_file_and_line(tmp_path, line, message):
    qa = write_lines(tmp_path / "qa.jsonl", {"id": "ok", "question": "q", "gold": ["a"]}, line)
    with pytest.raises(DocchatError) as caught:
        load_items(qa)
    assert f"{qa}:2" in str(caught.value) and message in str(caught.value)


def test_duplicate_ids_and_missing_files_are_errors(tmp_path):
    qa = write_lines(tmp_path / "qa.jsonl", {"id": "a", "question": "q", "gold": ["x"]}, {"id": "a", "question": "r", "gold": ["x"]})
    with pytest.raises(DocchatError, match="appears twice"):
        load_items(qa)
    with pytest.raises(DocchatError, match="Cannot read"):
        load_items(tmp_path / "missing.jsonl")


def test_per_question_table_as_jsonl_and_csv(tmp_path):
    results = [
        result(item("q1"), ["b.html", "a.html"], answer="btree [2]", cited=(2,)),
        result(item("q2", gold=(), answer=None, answerable=False), [], abstained=True),
    ]
    rows = [json.loads(line) for line in write_table(results, tmp_path / "t.jsonl").read_text().splitlines()]
    assert rows[0]["id"] == "q1" and rows[0]["gold_rank"] == 2 and rows[0]["cited"] == ["a.html"]
    assert rows[0]["retrieved"][1] == {"rank": 2, "source": "a.html", "score": 0.5, "cited": True}
    assert rows[1]["abstained"] is True and rows[1]["gold_rank"] is None
    csv_text = write_table(results, tmp_path / "t.csv").read_text()
    assert csv_text.splitlines()[0].startswith("id,kind,")
    assert "1:b.html(0.50) | 2:a.html(0.50)" in csv_text
    with pytest.raises(DocchatError, match="unknown table format"):
        write_table(results, tmp_path / "t.txt")
