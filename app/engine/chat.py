"""The chat engine: one entry point, used by the UI and the CLI alike.

A turn reads as a straight line:

    question + thread -> rewrite follow-up (history) -> retrieve -> pack context
      -> prompt -> stream tokens (or run the tool agent) -> Answer -> saved in the thread

Nothing retrieved above the threshold means an abstention with no sources (or, when
DOCCHAT_ALLOW_GENERAL_KNOWLEDGE is on, an answer visibly marked as general knowledge).
"""

from __future__ import annotations

import json
import re
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from app.backends import ChatBackend, EmbeddingBackend, Options, chat_backend, embedding_backend
from app.engine.answer import (
    EXTRACTIVE, GENERAL, GENERATED, NOT_FOUND, Answer, Done, Event, Evidence, Source, Timings, Token, ToolCall,
)
from app.engine.attribution import cite
from app.engine.guard import (
    EMPTY, FAKE_QUOTE, MARKUP, PROMPT_ECHO, PromptLines, StreamGuard, check_answer, urls,
)
from app.engine.context import Context, context_budget, pack, render_chunk
from app.engine.evidence import (
    EvidenceFinder, extractive_text, focused_text, grounding, is_refusal, quote_block, quoted,
)
from app.engine.history import recent_history
from app.engine.prompts import load_prompts
from app.engine.retrieval import Retrieval, RetrievalQuery, retrieve
from app.engine.rewrite import message_text as _text
from app.engine.rewrite import standalone_question
from app.engine.threads_pg import open_threads
from app.errors import DocchatError

log = logging.getLogger(__name__)

# Tokens the chat template adds around messages (role markers).
TEMPLATE_TOKENS = 24
# Problems after which the model's answer is not shown at all: quoted evidence replaces it.
# Others (a repeated sentence, a sentence with a made-up figure, name or link) are repaired by
# dropping what is wrong; an answer with nothing left is EMPTY.
FATAL_PROBLEMS = frozenset({MARKUP, PROMPT_ECHO, EMPTY, FAKE_QUOTE})
# An answer less grounded than this (share of its content words found in the sources) is
# taken as made up, and quoted evidence replaces it. Tuned on the PostgreSQL set.
MIN_GROUNDING = 0.5
# A model's "not found" is overruled by quoted evidence when the best sentence scores this
# well against the question (the documents do answer it). Tuned on the PostgreSQL set.
STRONG_EVIDENCE = 0.6
CLOSEST_SHOWN = 3


@dataclass
class _Turn:
    """What answering produced, before it becomes an Answer."""

    text: str = ""
    sources: list[Source] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    first_token_at: float | None = None
    prompt_tokens: int | None = None
    kind: str = GENERATED
    closest: list[Source] = field(default_factory=list)
    finder: EvidenceFinder | None = None  # the sources' sentences, embedded once per turn
    for_question: list[Evidence] = field(default_factory=list)  # the best sentences for the question
    lead: str = ""  # the quoted sentence streamed before the model's answer (evidence first)
    query: str = ""  # the standalone question (a follow-up rewritten): what evidence must answer
    asked: str = ""  # the user's words (question and standalone question): figures there are not made up
    model_first_at: float | None = None  # when the model's first token arrived


class Engine:
    """Answers questions from the indexed documents, with memory, citations and tools.

    Heavy parts (chat model, embedding model, index) are built on first use and then kept,
    so build one Engine per process (the UI caches it) and call ``stream`` or ``ask``.
    ``chat`` and ``embedder`` are backends (app.backends.contract); default: the ones the
    settings name.
    """

    def __init__(self, settings, *, chat: ChatBackend | None = None, embedder: EmbeddingBackend | None = None,
                 store=None):
        self.settings = settings
        self.prompts = load_prompts(settings.prompts_dir)
        self.threads = open_threads(settings)
        self._chat = chat
        self._embedder = embedder
        self._store = store
        self._prompt_lines = None
        self._lock = threading.RLock()

    # -- heavy parts, built once on first use ------------------------------------------
    @property
    def chat(self) -> ChatBackend:
        with self._lock:
            if self._chat is None:
                self._chat = chat_backend(self.settings)
            return self._chat

    @property
    def embedder(self) -> EmbeddingBackend:
        with self._lock:
            if self._embedder is None:
                self._embedder = embedding_backend(self.settings)
            return self._embedder

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                from vectorstore.backend import open_store

                self._store = open_store(self.settings)
            return self._store

    def load_models(self) -> None:
        """Load the chat and embedding models now (servers do this before their first request)."""
        self.chat.prepare()
        self.embedder.prepare()

    def read_ahead(self) -> None:
        """Open the index and start reading, in the background, what the first questions will
        need (servers do this once at start; a one-question ``docchat ask`` does not)."""
        from app.errors import DocchatError

        try:
            self.store.warm()
        except DocchatError:  # no index yet, or one the first question will explain
            pass

    def prepare(self) -> None:
        """Load the models and open the index now (the page does this before it is ready)."""
        self.load_models()
        self.store  # noqa: B018

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes in the chat model's prompt."""
        return self.chat.count_tokens(text)

    # -- the public entry points ----------------------------------------------------
    def search(self, query: str, *, k=None, sources=None, score_threshold=None) -> list[Source]:
        """The chunks ``query`` retrieves, ranked, as numbered sources; no LLM involved."""
        hits = self._retrieve(query, sources=sources, k=k, score_threshold=score_threshold).hits
        return [Source.from_hit(n, hit) for n, hit in enumerate(hits, start=1)]

    def ask(self, question: str, thread_id: str | None = None, **kw) -> Answer:
        """Answer ``question`` in one go (the stream, consumed)."""
        for event in self.stream(question, thread_id, **kw):
            if isinstance(event, Done):
                return event.answer
        raise AssertionError("stream ended without Done")  # pragma: no cover

    def stream(
        self,
        question: str,
        thread_id: str | None = None,
        *,
        sources: list[str] | None = None,
        k: int | None = None,
        temperature: float | None = None,
        score_threshold: float | None = None,
        claim_save: Callable[[], bool] | None = None,
    ) -> Iterator[Event]:
        """Answer ``question`` in ``thread_id`` (a new thread when None), token by token.

        Yields ``Token`` pieces of the answer, ``ToolCallEvent`` for each tool the agent
        runs, and lastly ``Done(answer)``. The question and the answer as checked (what the
        user is shown, so one bad answer cannot poison the follow-ups) are saved in the thread.
        The text of ``Done`` is the one to keep showing: it can differ from the streamed
        pieces when the check replaced the model's answer by quoted evidence.
        ``claim_save``, asked just before the save: False when the caller has already saved
        this turn itself (the page keeps a stopped answer's part that had arrived).
        """
        clock = _Clock()
        question = _required(question)
        self.prepare()  # the first question may wait for the models: the timings say so
        clock.lap("wait")
        thread = self.threads.get(thread_id) if thread_id else self.threads.create()
        history = self._history(thread.id)
        query = self.rewrite(question, history)
        clock.lap("rewrite")
        retrieval = self._retrieve(query, sources=sources, k=k, score_threshold=score_threshold)
        turn = _Turn(query=query, asked=f"{question}\n{query}")
        for event in self._answer(question, history, retrieval, turn, temperature):
            if isinstance(event, Token):
                turn.first_token_at = turn.first_token_at or time.perf_counter()
            yield event
        clock.lap("answer")
        answer = self._settle(question, turn, score_threshold)
        clock.lap("check")
        answer.thread_id, answer.rewritten_query = thread.id, query
        answer.timings = clock.timings(retrieval, turn)
        if claim_save is None or claim_save():
            self.threads.add_exchange(thread.id, question, answer.text, json.dumps(answer.to_dict()))
        yield Done(answer)

    # -- the answer as the user gets it -------------------------------------------------
    def _settle(self, question: str, turn: _Turn, score_threshold: float | None) -> Answer:
        """The checked answer: the model's (repaired), quoted evidence instead, or not found."""
        if turn.kind == NOT_FOUND:
            return self._not_found(turn.closest, score_threshold)
        if turn.kind == GENERAL:
            checked = check_answer(turn.text, self.prompt_lines, "")
            return Answer(text=checked.text, sources=[], cited=[], citations="none", thread_id="",
                          rewritten_query="", grounded=False, kind=GENERAL, problems=checked.problems,
                          prompt_tokens=turn.prompt_tokens, tool_calls=turn.tool_calls)
        checked = check_answer(turn.text, self.prompt_lines, _sources_text(turn.sources), self.prompts.quoted,
                               said=turn.lead, asked=turn.asked)
        finder = turn.finder or EvidenceFinder(turn.sources, self._embed)
        for_question = turn.for_question if turn.finder else finder.best([turn.query or question])
        refused = is_refusal(checked.text, self.prompts.not_found)
        strong = bool(for_question) and for_question[0].score >= STRONG_EVIDENCE
        if refused and not strong:
            answer = self._not_found(turn.sources, score_threshold)
            answer.problems, answer.tool_calls = checked.problems, turn.tool_calls
            return answer
        fatal = FATAL_PROBLEMS.intersection(checked.problems)
        if refused or fatal or grounding(checked.text, turn.sources) < MIN_GROUNDING:
            return self._extractive(for_question, turn, checked.problems)
        text, cited, citations = cite(checked.text, turn.sources)
        evidence = finder.best([turn.query or question, checked.text])
        cited = cited or _evidence_sources(evidence[:1])
        text = self._clean_as_shown(turn.lead, text, turn.sources)
        if text is None:  # not even the model's first sentence reads clean beside the quotes
            return self._extractive(for_question, turn, checked.problems)
        if turn.lead:  # the quote that was streamed first
            cited = list(dict.fromkeys([*(e.n for e in quoted(for_question)), *cited]))
        return Answer(text=text, sources=turn.sources, cited=cited, citations=citations, thread_id="",
                      rewritten_query="", tool_calls=turn.tool_calls, prompt_tokens=turn.prompt_tokens,
                      kind=GENERATED, evidence=evidence, problems=checked.problems,
                      links=_cited_links(text, turn.sources, cited))

    def _extractive(self, evidence: list[Evidence], turn: _Turn, problems: list[str]) -> Answer:
        """The best supporting sentences, quoted with their [n], in place of the model's answer."""
        if not evidence:  # nothing quotable either: the honest answer is that nothing was found
            answer = self._not_found(turn.sources, None)
            answer.problems = problems
            return answer
        if turn.lead:  # what the user already saw streamed
            text = f"{self.prompts.quoted.strip()}\n\n{turn.lead}"
        else:
            text = extractive_text(evidence, self.prompts.quoted)
        cited = _evidence_sources(quoted(evidence))
        return Answer(text=text, sources=turn.sources, cited=cited, citations="quoted", thread_id="",
                      rewritten_query="", tool_calls=turn.tool_calls, prompt_tokens=turn.prompt_tokens,
                      kind=EXTRACTIVE, evidence=evidence, problems=problems,
                      links=_cited_links(text, turn.sources, cited))

    def _clean_as_shown(self, lead: str, text: str, sources: list[Source]) -> str | None:
        """The answer as it will be shown: the lead, then the longest run of the model's sentences
        (from its first) with which the whole still passes the check; None when none does. The
        check runs again because what each part passed alone can fail together (the model
        restating the quote above it, a loop spanning the repair)."""
        pieces = re.split(r"(\n+|(?<=[.!?])\s+)", text.strip())
        for end in range(len(pieces), 0, -2):  # whole sentences, longest first
            kept = "".join(pieces[:end]).strip()
            shown = f"{lead}\n\n{kept}" if lead else kept
            if kept and not any(p != EMPTY for p in check_answer(shown, self.prompt_lines, _sources_text(sources)).problems):
                return shown
        return None

    def _not_found(self, closest: list[Source], score_threshold: float | None) -> Answer:
        """"Not found", with the closest passages and how to widen the search (never a dead end)."""
        threshold = self.settings.score_threshold if score_threshold is None else score_threshold
        return Answer(
            text=self.prompts.not_found, sources=[], cited=[], citations="none", thread_id="",
            rewritten_query="", grounded=False, kind=NOT_FOUND, closest=closest[:CLOSEST_SHOWN],
            hint=self.prompts.widen.format(threshold=f"{threshold:.2f}"),
        )

    def _embed(self, texts: list[str]):
        return self.embedder.embed(texts)

    @property
    def prompt_lines(self) -> PromptLines:
        """The prompt sentences an answer must not recite (built once)."""
        if self._prompt_lines is None:
            self._prompt_lines = PromptLines.from_templates(
                self.prompts.system, self.prompts.context, self.prompts.agent_system,
                self.prompts.general_system, allowed=self.prompts.not_found,
            )
        return self._prompt_lines

    # -- steps ------------------------------------------------------------------------
    def rewrite(self, question: str, history: list[BaseMessage]) -> str:
        """A standalone search query for a follow-up question (app.engine.rewrite)."""
        try:
            return standalone_question(question, history, self.prompts.rewrite, self.chat)
        except DocchatError:
            raise
        except Exception as exc:
            raise self.chat.explain_error(exc) from exc

    def uses_tools(self) -> bool:
        """Whether turns run the tool agent: DOCCHAT_TOOLS, and what the chat model can do."""
        mode = self.settings.tools
        if mode == "off" or self.settings.max_tool_calls == 0:
            return False
        return mode == "on" or self.chat.capabilities.tools

    def _history(self, thread_id: str) -> list[BaseMessage]:
        """The thread's recent turns, as many as DOCCHAT_MAX_HISTORY_TOKENS allows."""
        return recent_history(self.threads.messages(thread_id), self.settings.max_history_tokens, self.count_tokens)

    def _retrieve(self, query: str, *, sources, k, score_threshold) -> Retrieval:
        request = RetrievalQuery.from_settings(query, self.settings, k=k, sources=sources,
                                               score_threshold=score_threshold)
        return retrieve(request, store=self.store, embedder=self.embedder)

    def _answer(self, question, history, retrieval: Retrieval, turn: _Turn, temperature) -> Iterator[Event]:
        """The model's turn: the tool agent where it runs, else the grounded answer."""
        temperature = self.settings.temperature if temperature is None else temperature
        model = self.chat.with_options(Options(temperature, self.settings.max_new_tokens))
        if self.uses_tools():
            return self._agent_turn(model, question, history, retrieval, turn)
        return self._grounded_turn(model, question, history, retrieval, turn)

    def _grounded_turn(self, model, question, history, retrieval: Retrieval, turn: _Turn) -> Iterator[Event]:
        """Retrieval-augmented answer: the packed context, then the model's streamed answer."""
        context = self._pack(question, history, retrieval)
        if not context.sources:
            turn.closest = [Source.from_hit(n, hit) for n, hit in enumerate(retrieval.closest, start=1)]
            yield from self._without_context(model, question, history, turn)
            return
        turn.sources = context.sources
        turn.finder = EvidenceFinder(turn.sources, self._embed)
        turn.for_question = turn.finder.best([turn.query or question])
        if self.settings.quote_first and turn.for_question:  # evidence first, before the model speaks
            # The best sentence and a close runner-up, each with the next sentence of its
            # paragraph: the lead alone then carries 0.57 of the expected answer's words on the
            # PostgreSQL set and 0.58 on git, against 0.46 and 0.43 for the best sentence alone
            # (bench/lead_variants.py).
            turn.lead = quote_block(turn.finder.lead(turn.for_question))
            yield Token(turn.lead + "\n\n")
        chunks = self._focused(turn.query or question, context, turn.finder)
        messages = [
            SystemMessage(self.prompts.system_prompt()),
            *history,
            HumanMessage(self.prompts.context.format(chunks=chunks, question=question)),
        ]
        turn.prompt_tokens = self._prompt_tokens(messages)
        yield from self._stream_model(model, messages, turn, _sources_text(turn.sources))

    def _focused(self, question: str, context: Context, finder: EvidenceFinder) -> str:
        """The passages as the model reads them: each cut to its sentences most relevant to the
        question when DOCCHAT_CONTEXT_SENTENCES says so (a small model answers better from a few
        focused sentences than from whole chunks: bench/RESULTS-answers.md)."""
        per_source = self.settings.context_sentences_for_backend
        focus = finder.focus(question, per_source) if per_source else {}
        if not focus:
            return context.text
        return "\n\n".join(
            render_chunk(self.prompts, s, focused_text(s.text, focus[s.n]) if s.n in focus else None)
            for s in context.sources
        )

    def _without_context(self, model, question, history, turn: _Turn) -> Iterator[Event]:
        """Nothing passed the threshold: say so, or answer marked as general knowledge."""
        if not self.settings.allow_general_knowledge:
            turn.kind = NOT_FOUND
            turn.text = self.prompts.not_found
            yield Token(turn.text)
            return
        turn.kind = GENERAL
        marker = self.prompts.general_knowledge + "\n\n"
        yield Token(marker)
        messages = [SystemMessage(self.prompts.general_system), *history, HumanMessage(question)]
        turn.prompt_tokens = self._prompt_tokens(messages)
        yield from self._stream_model(model, messages, turn, "")
        turn.text = marker + turn.text

    def _agent_turn(self, model, question, history, retrieval: Retrieval, turn: _Turn) -> Iterator[Event]:
        """The tool agent: starts from the retrieved context and may search, read and compute."""
        from app.engine.agent import run_agent

        context = self._pack(question, history, retrieval)
        if context.sources:
            prompt = self.prompts.context.format(chunks=context.text, question=question)
        else:
            prompt = self.prompts.no_context.format(question=question)
        messages = [*history, HumanMessage(prompt)]
        try:
            yield from run_agent(self, model, messages, context.sources, turn)
        except DocchatError:
            raise
        except Exception as exc:
            raise self.chat.explain_error(exc) from exc
        if not turn.sources:
            turn.kind = NOT_FOUND
            turn.closest = [Source.from_hit(n, hit) for n, hit in enumerate(retrieval.closest, start=1)]

    def _pack(self, question, history, retrieval: Retrieval) -> Context:
        count = self.count_tokens
        window = self.chat.capabilities.context_window
        fixed = (
            count(self.prompts.system_prompt())
            + sum(count(_text(m)) for m in history)
            + count(self.prompts.context.format(chunks="", question=question))
            + TEMPLATE_TOKENS
        )
        return pack(retrieval.hits, context_budget(self.settings, window, fixed_tokens=fixed), self.prompts, count)

    def _stream_model(self, model, messages, turn: _Turn, sources_text: str) -> Iterator[Event]:
        """The model's answer as it streams, through the guard: what might turn out bad is held
        back, and the model is stopped at a loop or when it starts another prompt turn."""
        guard = StreamGuard(self.prompt_lines, sources_text, said=turn.lead, asked=turn.asked)
        stream = model.stream(messages)
        try:
            for chunk in stream:
                if turn.model_first_at is None:
                    turn.model_first_at = time.perf_counter()
                shown = guard.feed(_text(chunk))
                if shown:
                    yield Token(shown)
                if guard.stop:
                    log.info("stopped the model: %s", "loop" if guard.repeats else "it began another turn")
                    break
            rest = guard.finish()
            if rest:
                yield Token(rest)
        except DocchatError:
            raise
        except Exception as exc:
            raise self.chat.explain_error(exc) from exc
        finally:
            stream.close()  # stops a local model's generation thread too
        turn.text = guard.raw.strip()

    def _prompt_tokens(self, messages) -> int:
        return sum(self.count_tokens(_text(m)) for m in messages) + TEMPLATE_TOKENS


class _Clock:
    """Where a turn's time went: laps named by the step that just ended."""

    def __init__(self):
        self.started = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self._last) * 1000
        self._last = now

    def timings(self, retrieval: Retrieval, turn: _Turn) -> Timings:
        def since_start(at: float | None) -> float | None:
            return round((at - self.started) * 1000, 1) if at else None

        return Timings(
            retrieve_ms=round(retrieval.ms, 1),
            first_token_ms=since_start(turn.first_token_at),
            model_first_token_ms=since_start(turn.model_first_at),
            total_ms=round((time.perf_counter() - self.started) * 1000, 1),
            rewrite_ms=round(self.laps["rewrite"], 1),
            wait_ms=round(self.laps["wait"], 1),
            check_ms=round(self.laps["check"], 1),
        )


def _required(question: str) -> str:
    question = question.strip()
    if not question:
        raise DocchatError("The question is empty.", fix="Type a question.")
    return question


def _sources_text(sources: list[Source]) -> str:
    return "\n".join(s.text for s in sources)


def _cited_links(text: str, sources: list[Source], cited: list[int]) -> list[str]:
    """The links in ``text`` that a cited source contains: the only ones shown clickable."""
    cited_text = _sources_text([s for s in sources if s.n in cited]).lower()
    return [u for u in dict.fromkeys(urls(text)) if u.lower() in cited_text]


def _evidence_sources(evidence: list[Evidence]) -> list[int]:
    return list(dict.fromkeys(e.n for e in evidence))




