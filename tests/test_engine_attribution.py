"""Word-overlap citations for answers whose model wrote no [n]."""

from app.engine.answer import Source
from app.engine.attribution import attribute, cite


def source(n, text, name):
    return Source(n=n, source=name, root="/docs", page=None, heading=None, score=0.5, snippet=text[:40], text=text)


SOURCES = [
    source(1, "The default index method is btree. Other methods are hash, gist and gin.", "createindex.html"),
    source(2, "TRUNCATE does not fire ON DELETE triggers; it fires ON TRUNCATE triggers.", "truncate.html"),
]


def test_each_sentence_gets_the_source_it_came_from():
    text, cited = attribute("If you omit USING, the default index method is btree. TRUNCATE will not fire ON DELETE triggers!", SOURCES)
    assert text == "If you omit USING, the default index method is btree [1]. TRUNCATE will not fire ON DELETE triggers [2]!"
    assert cited == [1, 2]


def test_a_sentence_that_matches_no_source_stays_uncited():
    text, cited = attribute("Paris is the capital of France and has many museums.", SOURCES)
    assert text == "Paris is the capital of France and has many museums."
    assert cited == []


def test_short_generic_sentences_are_not_attributed():
    assert attribute("It is btree.", SOURCES) == ("It is btree.", [])


def test_the_models_own_citations_win():
    assert cite("The default is btree [1].", SOURCES) == ("The default is btree [1].", [1], "model")
    text, cited, how = cite("The default index method is btree.", SOURCES)
    assert (text, cited, how) == ("The default index method is btree [1].", [1], "overlap")
    assert cite("No idea.", SOURCES) == ("No idea.", [], "none")
    assert cite("The default index method is btree.", []) == ("The default index method is btree.", [], "none")


def test_line_breaks_and_lists_are_kept():
    text, _ = attribute("Methods:\n- the default index method is btree\n- hash", SOURCES)
    assert text == "Methods:\n- the default index method is btree [1]\n- hash"
