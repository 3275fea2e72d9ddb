"""The answer check: what a model wrote, judged before the user relies on it.

Small local models fail in a few recognisable ways: they echo the prompt's markup
(``<document n="2" source=...>``), repeat a sentence until the token limit, recite the
system prompt, or make up a link. Each failure is a property of single sentences, so one set
of sentence predicates serves twice:

* while the answer streams, ``StreamGuard`` holds back only the sentence that might turn
  out bad (it starts like an earlier sentence or like the prompt, or carries markup or a
  link) and stops the model at a loop or an echo of the prompt's structure;
* on the finished text, ``check_answer`` lists the problems (the "garbled" figure of
  ``docchat eval``) and repairs what can be repaired: repeated sentences, prompt text and
  markup are dropped, links and addresses that appear in no source are removed.

Whether a repaired answer is still worth showing (or is replaced by sentences quoted from
the documents) is the engine's decision: see ``app.engine.evidence``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.engine.attribution import CITATION, content_words

# Problem names, as recorded in Answer.problems and counted by `docchat eval`.
MARKUP = "markup"  # fence, role or prompt-structure text copied into the answer
PROMPT_ECHO = "prompt_echo"  # a sentence of the system or context prompt
REPETITION = "repetition"  # the same sentence (or phrase loop) again
UNSUPPORTED_LINK = "unsupported_link"  # a URL or e-mail address no source contains
UNSUPPORTED_NUMBER = "unsupported_number"  # a figure no source contains (made up)
UNSUPPORTED_NAME = "unsupported_name"  # an identifier, acronym or CamelCase name no source contains
MISPLACED_PATH = "misplaced_path"  # a path or file name the sources give for something else
FAKE_QUOTE = "fake_quote"  # a "> quote" that is not in the sources, or docchat's own quote label
EMPTY = "empty"  # nothing left to show

# A sentence is "the same" as another when this share of its words (both ways) is shared.
SAME_SENTENCE = 0.8
# ... and it is an echo of the prompt when this share of its words comes from one prompt line.
ECHO_SHARE = 0.75
# Sentences shorter than this (in words) are never judged as repeats or echoes ("Yes.").
MIN_JUDGED_WORDS = 4
# A sentence is held back while streaming when its first words match another's ...
PREFIX_WORDS = 3
# A sentence restates an earlier, longer one when all its content words (at least this many)
# are in it; shorter ones are often a document's own follow-up ("But it will fire ON TRUNCATE
# triggers." after "TRUNCATE will not fire any ON DELETE triggers ...").
RESTATED_WORDS = 5
# ... or when it uses one of the prompt's words this long (or one of those below), which
# answers seldom need: "passages", "instructions", "numbered".
SIGNATURE_LETTERS = 7
ALWAYS_SIGNATURE = frozenset({"untrusted", "instructions", "passages", "fence", "fences"})
# A phrase loop inside one sentence: the same n-gram (n <= LOOP_MAX_N) this many times in a row.
LOOP_REPEATS = 3
LOOP_MAX_N = 12

_SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+(?!\[\d)|\n+")  # "... end. [4]" keeps its citation
_WORD = re.compile(r"[a-z0-9_]+")
# Links (also used by the page to decide what is clickable) and e-mail addresses.
LINK = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>()\[\]\"'`]+", re.I)
MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*([^)\s]*)\s*\)")
_URL = re.compile(LINK.pattern + r"|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", re.I)
# Text that only the prompt's structure or a chat template produces, never an answer.
_MARKUP = re.compile(
    r"</?\s*document\b[^>]*>?"  # our old fences, and look-alikes
    r"|\bn\s*=\s*\"\d+\"|\bsource\s*=\s*\"[^\"]*\"?"  # fence attributes
    r"|<\|[a-z_]+\|>|<\|im_(?:start|end)\|>"  # chat-template special tokens
    r"|^\s*(?:Passage|Document|Text)?s?\s*\[\d+\][ \t]*\w"  # a passage header, echoed or made up
    r"|&(?:gt|lt|quot);",  # the escaped text of the old fences
    re.I | re.M,
)
# Where the model starts writing the next prompt turn instead of the answer: stop there.
_NEXT_TURN = re.compile(
    r"(?:^|\n)\s*(?:Question|User|Human|Assistant|System|Documents?|Passages?)\s*(?:\[\d+\])?\s*:"
    r"|<\|im_start\|>|<\|endoftext\|>",
    re.I,
)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def split_sentences(text: str) -> list[str]:
    """Sentences (and list items / lines) of ``text``, without their separators."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def urls(text: str) -> list[str]:
    """The links and e-mail addresses in ``text``, without trailing punctuation."""
    return [m.group(0).rstrip(".,;:!?") for m in _URL.finditer(text)]


_NUMBER = re.compile(r"(?<![\w.\[])(\d+(?:[.,]\d+)*)([a-zA-Z%]{0,3})(?![\w\]])")
# Names a source would contain if it were about them: snake_case identifiers, acronyms
# (JSON, WAL) and CamelCase (PostgreSQL, MongoDB).
COMMON_CAPITALS = frozenset({"OK", "ID", "IDs", "AM", "PM", "FAQ", "FAQs", "TL", "DR"})
# ... and a long command-line option ("--delete", seen made up for "remove one document").
_IDENTIFIER = re.compile(r"\b(?:[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]{1,}s?|[A-Za-z][a-z0-9]+[A-Z][A-Za-z0-9]*)\b"
                         r"|(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


# A path or file name: "data/threads.sqlite", "/etc/hosts", "pg_hba.conf" (a name, a dot, then
# 2-5 letters: "e.g." and "3.11" are not file names); "and/or" and its like are words, not paths.
_PATH = re.compile(r"(?<![\w/.])(?:[\w.~-]*/[\w./~-]*\w|[a-z_][\w-]+\.[a-z]{2,5})(?![\w/])", re.I)
# Words that say where a thing is, not what it is: they tie a path to nothing in particular.
_PLACE_WORDS = frozenset("see use check look find found locate located store stored kept keep file files "
                         "folder folders directory directories path name named set edit open".split())
_NOT_PATHS = frozenset({"and/or", "either/or", "i/o", "tcp/ip", "input/output", "read/write", "client/server",
                        "yes/no", "on/off", "true/false", "he/she", "his/her", "s/he"})
_SOURCE_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n\s*\n")


_LIST_MARKER = re.compile(r"^\s*\d+[.)](?=\s)", re.MULTILINE)


def numbers(text: str) -> list[str]:
    """The figures in ``text`` with their unit if any ("4MB", "25%"; not the [n] of citations,
    not list numbering), as written."""
    text = _LIST_MARKER.sub(" ", CITATION.sub(" ", text))
    return ["".join(m) for m in _NUMBER.findall(text)]


def _similar(a: list[str], b: list[str]) -> bool:
    if a == b and len(a) >= 2:  # a short line again, word for word ("- PDF files (.pdf)")
        return True
    if len(a) < MIN_JUDGED_WORDS or len(b) < MIN_JUDGED_WORDS:
        return False
    sa, sb = set(a), set(b)
    shared = len(sa & sb)
    return shared / len(sa) >= SAME_SENTENCE and shared / len(sb) >= SAME_SENTENCE


def has_phrase_loop(sentence_words: list[str]) -> bool:
    """True when the same run of words repeats LOOP_REPEATS times back to back ("the the the")."""
    size = len(sentence_words)
    for n in range(1, LOOP_MAX_N + 1):
        if n * LOOP_REPEATS > size:
            break
        for start in range(0, size - n * LOOP_REPEATS + 1):
            gram = sentence_words[start:start + n]
            if all(sentence_words[start + r * n:start + (r + 1) * n] == gram for r in range(1, LOOP_REPEATS)):
                return True
    return False


@dataclass
class PromptLines:
    """The prompt's own sentences (system and context templates), which an answer must not recite.

    The not-found message is excluded: saying it is a legitimate answer.
    """

    lines: list[list[str]] = field(default_factory=list)
    signature: frozenset[str] = frozenset()  # the prompt's distinctive words: a sentence using one is held back

    @classmethod
    def from_templates(cls, *templates: str, allowed: str = "") -> "PromptLines":
        allowed_words = words(allowed)
        lines = []
        for template in templates:
            plain = re.sub(r"\{[a-z_]+\}", " ", template)
            for sentence in split_sentences(plain):
                sentence_words = words(sentence)
                if len(sentence_words) >= MIN_JUDGED_WORDS and not _similar(sentence_words, allowed_words):
                    lines.append(sentence_words)
        long_words = {w for line in lines for w in line if len(w) >= SIGNATURE_LETTERS}
        return cls(lines, frozenset(long_words | ALWAYS_SIGNATURE))

    def echoes(self, sentence_words: list[str]) -> bool:
        """Whether a sentence is (mostly) one of the prompt's sentences."""
        if len(sentence_words) < MIN_JUDGED_WORDS:
            return False
        mine = set(sentence_words)
        return any(len(mine & set(line)) / len(mine) >= ECHO_SHARE and len(mine & set(line)) >= MIN_JUDGED_WORDS
                   for line in self.lines)

    def might_echo(self, partial_words: list[str]) -> bool:
        """Whether an unfinished sentence uses the prompt's own words (judge it when it ends)."""
        return any(w in self.signature for w in partial_words)


@dataclass
class Checked:
    """The outcome of checking one answer: the repaired text and what was wrong with the original."""

    text: str
    problems: list[str] = field(default_factory=list)

    @property
    def garbled(self) -> bool:
        return bool(self.problems)


class SentenceJudge:
    """Judges the sentences of one answer in order (it remembers the earlier ones)."""

    def __init__(self, prompt: PromptLines, source_text: str, asked: str = "", said: str = ""):
        self.prompt = prompt
        self.source_text = source_text.lower()
        self.asked = asked.lower()  # the user's words: a figure they give is not made up ("start at 1000")
        # what the user was already shown (the quoted evidence): saying it again is repetition
        self.seen: list[list[str]] = [words(sentence) for sentence in split_sentences(said.replace(">", " "))]
        self._sentences: list[str] | None = None

    def problem(self, sentence: str) -> str | None:
        """What is wrong with this sentence, if anything (it is remembered either way)."""
        if _MARKUP.search(sentence):
            return MARKUP
        sentence_words = words(sentence)
        if has_phrase_loop(sentence_words):
            return REPETITION
        if any(_similar(sentence_words, earlier) for earlier in self.seen) or self._says_nothing_new(sentence):
            return REPETITION
        if self.prompt.echoes(sentence_words):
            return PROMPT_ECHO
        self.seen.append(sentence_words)
        return None

    def _says_nothing_new(self, sentence: str) -> bool:
        """A sentence whose every content word an earlier, longer one already said: recorded,
        "The chat model is not deleted by default, but the chat model is deleted when you
        delete the data folder [2]. The chat model is deleted when you delete the data folder [3]."
        (too short beside the first to count as the same sentence)."""
        mine = content_words(CITATION.sub(" ", sentence))
        return len(mine) >= RESTATED_WORDS and any(mine <= set(earlier) and len(earlier) > len(mine)
                                                 for earlier in self.seen)

    def unsupported_links(self, sentence: str) -> list[str]:
        return [u for u in urls(sentence) if u.lower() not in self.source_text]

    def unsupported_numbers(self, sentence: str) -> list[str]:
        """Figures in the sentence that appear in no source (with their unit, "40MB" is not
        "4MB"): a small model's made-up facts."""
        found = []
        for figure in numbers(_URL.sub(" ", sentence)):
            number, unit = re.match(r"([\d.,]+)(.*)", figure).groups()
            pattern = rf"(?<![\d.,]){re.escape(number)}(?![\d])" + (rf"\s?{re.escape(unit.lower())}" if unit else "")
            if not re.search(pattern, self.source_text) and not re.search(pattern, self.asked):
                found.append(figure)
        return found

    def unsupported_names(self, sentence: str) -> list[str]:
        """Names in the sentence that no source contains: made-up functions, formats, products."""
        names = [n for n in _IDENTIFIER.findall(_URL.sub(" ", sentence)) if n not in COMMON_CAPITALS]
        return [n for n in names if not any(re.search(rf"(?<!\w){re.escape(form)}(?!\w)", self.source_text)
                                            for form in {n.lower(), n.lower().removesuffix("s")})]

    def misplaced_paths(self, sentence: str) -> list[str]:
        """Paths the sentence ties to something no source sentence naming them speaks of.

        A small model swaps places between true facts: "Conversations are in
        data/threads.sqlite. ... Documents uploaded ... are copied to data/documents." became
        "The conversations are stored in the data/documents folder." Every word is in the
        sources, so only this catches it: the sentence's words besides the path (stemmed) must
        meet those of at least one source sentence that names the path. Words that only say
        where ("stored", "folder") do not count, and a sentence with nothing else ("See
        postgresql.conf.") is left alone."""
        from app.engine.relevance import stems

        found = []
        for path in dict.fromkeys(_PATH.findall(_URL.sub(" ", CITATION.sub(" ", sentence)))):
            if path.lower() in _NOT_PATHS:
                continue
            said = stems(sentence.replace(path, " ")) - stems(" ".join(_PLACE_WORDS))
            if not said:
                continue
            naming = [s for s in self._source_sentences() if path.lower() in s]
            if naming and not any(said & stems(s.replace(path.lower(), " ")) for s in naming):
                found.append(path)
        return found

    def _source_sentences(self) -> list[str]:
        if self._sentences is None:
            self._sentences = _SOURCE_SENTENCE_END.split(self.source_text)
        return self._sentences

    def fake_quote(self, line: str, label: str) -> bool:
        """A quoted line ("> ...") whose words are not in the sources, or docchat's own label:
        the model imitating a quoted answer it saw in the conversation."""
        stripped = line.strip()
        if label and stripped.lower().startswith(label.lower().rstrip(":")):
            return True
        if not stripped.startswith(">"):
            return False
        cited_at_end = r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+\s*$"  # our [n]; a "[2]" inside is the source's own
        body = " ".join(re.sub(cited_at_end, "", stripped.lstrip("> ")).split()).lower()
        return bool(body) and body.rstrip(".") not in " ".join(self.source_text.split())

    def suspicious_start(self, partial: str) -> bool:
        """Whether an unfinished sentence must wait until it ends before it is shown."""
        if partial.lstrip().startswith(">") or "quoted from" in partial.lower():
            return True  # maybe imitating a quoted answer: judged when the line ends
        if "<" in partial or _MARKUP.search(partial) or _URL.search(partial) or _PATH.search(partial) or any(
            mark in partial for mark in ("http", "@", "www", "&gt;", "&lt;")
        ):
            return True
        partial_words = words(partial)
        if self.prompt.might_echo(partial_words):
            return True
        head = partial_words[:PREFIX_WORDS]
        if len(head) == PREFIX_WORDS and any(earlier[:PREFIX_WORDS] == head for earlier in self.seen):
            return True
        return self.restating(partial_words)

    def restating(self, partial_words: list[str]) -> bool:
        """Whether an unfinished sentence so far only says again what an earlier one said, in
        another order ("The FIFO principle is often misunderstood as ..." after "The
        first-in-first-out (FIFO) principle is often misunderstood, ..."): it is likely a
        repeat, judged when it ends instead of shown word by word."""
        mine = content_words(" ".join(partial_words))
        if len(mine) < PREFIX_WORDS:
            return False
        return any(len(mine & set(earlier)) / len(mine) >= SAME_SENTENCE for earlier in self.seen)


def remove_links(sentence: str, links: list[str]) -> str:
    """``sentence`` without the given links; a Markdown link keeps its text."""
    def unlink(match: re.Match) -> str:
        return match.group(1) if match.group(2).rstrip(".,;:!?") in links else match.group(0)

    sentence = MD_LINK.sub(unlink, sentence)
    for link in links:
        sentence = sentence.replace(link, "")
    return re.sub(r"[ \t]{2,}", " ", sentence).replace(" .", ".").strip()


def cut_at_next_turn(text: str) -> tuple[str, bool]:
    """``text`` up to where the model started writing another prompt turn, and whether it did."""
    match = _NEXT_TURN.search(text)
    if match is None:
        return text, False
    return text[: match.start()], True


def without_empty_fences(text: str) -> str:
    """``text`` less the code fences left with nothing inside once their lines were dropped
    (a ``` line, then the closing ``` line): the page would show an empty box."""
    lines = text.split("\n")
    drop, opened = set(), None
    for i, line in enumerate(lines):
        if not line.strip().startswith("```"):
            continue
        if opened is None:
            opened = i
        else:
            if all(not lines[j].strip() for j in range(opened + 1, i)):
                drop.update(range(opened, i + 1))
            opened = None
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def check_answer(text: str, prompt: PromptLines, sources_text: str, quote_label: str = "",
                 said: str = "", asked: str = "") -> Checked:
    """Judge a finished answer sentence by sentence; return the repaired text and the problems.

    ``quote_label`` is the label of docchat's quoted answers: a model that writes it, or a
    "> quote" that is not in the sources, is imitating one (``FAKE_QUOTE``). ``said`` is what
    the user was shown before the model's text (the evidence quote): saying it again is
    repetition. ``asked`` is the user's question: figures it gives are not made up.
    """
    problems: list[str] = []
    text, cut = cut_at_next_turn(text)
    if cut:
        problems.append(MARKUP)
    judge = SentenceJudge(prompt, sources_text, asked, said)
    kept = []
    for piece in re.split(r"(\n+)", text):  # keep the answer's line structure (lists)
        if piece.startswith("\n"):
            kept.append(piece)
            continue
        if judge.fake_quote(piece, quote_label):
            problems.append(FAKE_QUOTE)
            continue
        line = []
        for sentence in split_sentences(piece):
            problem = judge.problem(sentence)
            if problem:
                problems.append(problem)
                continue
            if judge.unsupported_numbers(sentence):
                problems.append(UNSUPPORTED_NUMBER)
                continue
            if judge.unsupported_names(sentence):
                problems.append(UNSUPPORTED_NAME)
                continue
            if judge.misplaced_paths(sentence):
                problems.append(MISPLACED_PATH)
                continue
            links = judge.unsupported_links(sentence)
            if links:
                problems.append(UNSUPPORTED_LINK)
                sentence = remove_links(sentence, links)
            if sentence:
                line.append(sentence)
        if line:
            kept.append(" ".join(line))
        elif kept and kept[-1].startswith("\n"):
            kept.pop()  # a line dropped whole takes its line break with it
    repaired = re.sub(r"\n{3,}", "\n\n", without_empty_fences("".join(kept))).strip()
    if not repaired:
        problems.append(EMPTY)
    return Checked(repaired, list(dict.fromkeys(problems)))


class StreamGuard:
    """Releases a streamed answer piece by piece, holding back what might turn out bad.

    ``feed(piece)`` returns the text that may be shown now; ``stop`` becomes True when the
    model should be stopped (a repeated sentence, or it began another prompt turn);
    ``finish()`` returns what is left to show. The full text the model wrote is ``raw``.
    """

    MAX_REPEATS = 2  # repeated sentences dropped before the model is stopped

    def __init__(self, prompt: PromptLines, sources_text: str, said: str = "", asked: str = ""):
        self.judge = SentenceJudge(prompt, sources_text, asked, said)
        self.raw = ""
        self.pending = ""  # the unfinished sentence not yet shown
        self.shown_of_pending = 0  # how much of ``pending`` was already released
        self.repeats = 0
        self.stop = False

    def feed(self, piece: str) -> str:
        if self.stop:
            return ""
        self.raw += piece
        self.pending += piece
        cut, next_turn = cut_at_next_turn(self.pending)
        if next_turn:
            self.pending = cut
            self.stop = True
            return self._complete(self.pending)
        out = []
        while True:
            match = _SENTENCE_END.search(self.pending)
            if match is None:
                break
            sentence, self.pending = self.pending[: match.end()], self.pending[match.end():]
            out.append(self._complete(sentence))
            self.shown_of_pending = 0
            if self.stop:
                return "".join(out)
        out.append(self._partial())
        return "".join(out)

    def finish(self) -> str:
        rest = self._complete(self.pending) if self.pending else ""
        self.pending = ""
        return rest

    def _partial(self) -> str:
        """The shown part of the unfinished sentence grows word by word unless it is suspicious;
        a loop inside it ("--full --full --full ...", a sentence that never ends) stops the model
        as a repeated sentence does, before the repeat is shown."""
        if has_phrase_loop(words(self.pending)):
            self.repeats, self.stop = self.MAX_REPEATS, True
            return ""
        if self.judge.suspicious_start(self.pending):
            return ""
        end = self.pending.rfind(" ") + 1  # never release half a word (it may become a URL)
        released = self.pending[self.shown_of_pending:end] if end > self.shown_of_pending else ""
        self.shown_of_pending = max(self.shown_of_pending, end)
        return released

    def _complete(self, sentence: str) -> str:
        """A finished sentence: the part not yet shown, or nothing if the sentence is bad."""
        already = self.shown_of_pending
        self.shown_of_pending = 0
        body = sentence.strip()
        if not body:
            return sentence[already:]
        problem = self.judge.problem(body)
        if problem == REPETITION:
            self.repeats += 1
            self.stop = self.repeats >= self.MAX_REPEATS
        if problem:
            self.stop = self.stop or problem == MARKUP
            return ""
        if self.judge.misplaced_paths(body):
            return ""
        links = self.judge.unsupported_links(body)
        rest = sentence[already:]
        if links:  # what is already on screen stays; the rest goes without the links
            return remove_links(rest, links) + (" " if rest.endswith((" ", "\n")) else "")
        return rest
