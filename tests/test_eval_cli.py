"""`docchat eval` end to end: a small corpus ingested for real, questions in, figures out."""

from __future__ import annotations

import json

import pytest

from app.cli import main

DOCS = {
    "docs/guides/install.md": "# Installing Frobnicator\n\nTo install Frobnicator run `pip install frobnicator`. "
    "Frobnicator requires Python 3.11 or newer and a C compiler for its native extension.\n",
    "docs/guides/backup.md": "# Backups\n\nThe backup job runs every night at 02:00. Backup archives are kept "
    "for thirty days, after which the oldest archive is deleted automatically.\n",
    "docs/reference/config.md": "# Configuration\n\n## max_widgets\n\nThe setting max_widgets limits how many "
    "widgets one dashboard shows. Its default value is 42. It can be changed at runtime with the "
    "`frob config set max_widgets N` command, without a restart.\n",
    "docs/faq.txt": "Coffee machine care: descale the office coffee machine every three months with citric acid.\n",
}

QA = [
    {"id": "s1", "question": "What command installs Frobnicator?", "gold": ["guides/install.md"],
     "answer": "pip install frobnicator", "answerable": True, "difficulty": "easy"},
    {"id": "s2", "question": "How long are backup archives kept?", "gold": ["guides/backup.md"],
     "answer": "kept for thirty days", "answerable": True, "difficulty": "easy"},
    {"id": "s3", "question": "How often should the coffee machine be descaled?", "gold": ["faq.txt"],
     "answer": "every three months", "answerable": True, "difficulty": "easy"},
    {"id": "m1", "turns": ["What is the default of max_widgets?", "Can I change it without restarting?"],
     "gold": ["reference/config.md"], "answer": "changed at runtime", "answerable": True, "difficulty": "medium"},
    {"id": "u1", "question": "Who won the 1966 football World Cup final?", "gold": [], "answer": None,
     "answerable": False, "difficulty": "easy"},
]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, embeddings):
    """The corpus ingested once (folder above docs/, so sources are docs/guides/... paths)."""
    from app.config import load_settings
    from ingest.sync import sync

    base = tmp_path_factory.mktemp("eval-corpus")
    for name, text in DOCS.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text(text)
    qa = base / "qa.jsonl"
    qa.write_text("".join(json.dumps(item) + "\n" for item in QA))
    data = base / "data"
    settings = load_settings(env_file=None, data_dir=data)
    summary = sync(settings, [base], embedder=embeddings)
    assert not summary.failed
    return {"data": data, "qa": qa, "root": base}


@pytest.fixture
def index_env(indexed, monkeypatch):
    monkeypatch.setenv("DOCCHAT_DATA_DIR", str(indexed["data"]))
    return indexed


def test_no_llm_eval_prints_the_figures_and_writes_the_table(index_env, capsys, tmp_path):
    out = tmp_path / "per-question.jsonl"
    assert main(["eval", str(index_env["qa"]), "--no-llm", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    single = next(line for line in printed.out.splitlines() if line.strip().startswith("single-turn"))
    assert single.split()[-4:] == ["3", "1.00", "1.00", "1.00"]  # n, hit@1, hit@5, MRR
    followup = next(line for line in printed.out.splitlines() if "follow-up" in line)
    assert "prev. turn + follow-up" in followup and followup.split()[-3] == "1.00"
    assert "recall     1 of 1 unanswerable" in printed.out
    assert "false abstentions on answerable items: 0 of 4" in printed.out
    assert "Citation" not in printed.out  # no answers in --no-llm mode
    assert "s1: gold at 1" in printed.err and "u1: abstained" in printed.err  # progress on stderr

    rows = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"s1", "s2", "s3", "m1", "u1"}
    assert rows["s1"]["retrieved"][0]["source"] == "docs/guides/install.md"  # matched to gold guides/install.md
    assert rows["s1"]["gold_rank"] == 1
    assert rows["m1"]["query"] == "What is the default of max_widgets? Can I change it without restarting?"
    assert rows["u1"]["abstained"] is True and rows["u1"]["retrieved"] == []


def test_json_summary_and_item_selection(index_env, capsys):
    assert main(["eval", str(index_env["qa"]), "--no-llm", "--json", "--ids", "s2,u1", "--k", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 2 and summary["k"] == 2 and summary["mode"] == "retrieval"
    assert summary["retrieval"]["single"] == {"n": 1, "hit@1": 1.0, "hit@5": 1.0, "mrr": 1.0}
    assert summary["retrieval"]["followup"]["n"] == 0
    assert summary["abstention"]["recall"] == 1.0
    assert summary["latency_ms"]["retrieve"]["n"] == 2


def test_a_threshold_above_every_score_abstains_on_everything(index_env, capsys, monkeypatch):
    monkeypatch.setenv("DOCCHAT_KEYWORD_RELIEF", "0")  # else a chunk holding the words lowers the bar
    assert main(["eval", str(index_env["qa"]), "--no-llm", "--json", "--score-threshold", "0.99"]) == 0
    abstention = json.loads(capsys.readouterr().out)["abstention"]
    assert abstention["false_abstentions"] == 4 and abstention["precision"] == pytest.approx(1 / 5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "table.txt"], "unknown table format"),
        (["--ids", "s1,nope"], "no item nope"),
        (["--k", "0"], "--k 0"),
    ],
)
def test_bad_arguments_are_named(index_env, capsys, args, message):
    assert main(["eval", str(index_env["qa"]), "--no-llm", *args]) == 2
    assert message in capsys.readouterr().err


def test_without_an_index_it_says_to_ingest(indexed, capsys):
    assert main(["eval", str(indexed["qa"]), "--no-llm"]) == 2  # the test's own, empty data folder
    assert "docchat ingest" in capsys.readouterr().err


@pytest.mark.slow
def test_answers_mode_scores_citations_and_phrases(index_env, capsys, tmp_path):
    out = tmp_path / "answers.csv"
    assert main(["eval", str(index_env["qa"]), "--ids", "m1,u1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Citation accuracy" in printed and "time to first token" in printed
    assert "recall     1 of 1 unanswerable" in printed  # nothing above the threshold: not found
    table = out.read_text()
    assert table.startswith("id,kind,") and "m1,followup" in table and "u1,unanswerable" in table
    from app.config import load_settings
    from app.engine import ThreadStore

    assert ThreadStore(load_settings(env_file=None).threads_db_path).list() == []  # eval threads removed
