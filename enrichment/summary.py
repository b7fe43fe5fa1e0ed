"""Extractive summary in Markdown: the meeting's own sentences, the ones that carry its substance.

A sentence's worth is its centrality (TextRank: PageRank over TF-IDF cosine similarities) times what kind of
sentence it is: decisions, problems and risks, constraints, outcomes and figures ("forty times per render",
"up eighteen percent") count more; questions, acknowledgements and small talk less. Sentences are lightly
compressed first (fillers, openers and hedges out: "so, um, I think we should" -> "we should").

The detailed summary has one section per topic (enrichment/agenda.py: the agenda's items, else TextTiling;
found topics of a short meeting share one section): every section keeps its best sentence when it is worth
a line, then the rest of the budget (WORD_SHARE of the meeting's words, headings and names included) goes to
the best sentences anywhere, by maximal marginal relevance (MMR), so a point said twice is kept once. An
answer that leans on the question before it is kept with that question. The action items follow. ``brief``
is the best few of those, within BRIEF_SHARE of the meeting's words, in the order they were said.
Deterministic and offline."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import takewhile

import numpy as np

from enrichment.dates import find_dates
from enrichment.model import ActionItem, AgendaTopic, Dialogue, Summary
from enrichment.text import content_words, split_sentences, words

WORD_SHARE = 0.38  # of the meeting's words the topic sections may use, headings and speaker names included
BRIEF_SHARE = 0.12  # of the meeting's words the brief may use
MIN_WORDS = 40  # the least either budget is, for very short meetings
BRIEF_MAX = 5
MIN_SECTION_WORDS = 150  # found topics (no agenda) averaging fewer words than this get no sections of their own
LENGTH_EXPONENT = 0.3  # worth per word**this: a long sentence must say more to be chosen over two short ones
MMR_REDUNDANCY = 0.7  # how much a sentence's overlap with those already chosen costs it
SAME = 0.8  # cosine similarity at which a sentence says what a chosen one says: never chosen
_NUMBER_WORDS = ("two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
                 "million billion percent half double doubled twice triple tripled dozen")  # fmt: skip
_FIGURE = re.compile(r"\d|\b(?:" + "|".join(_NUMBER_WORDS.split()) + r")(?:-\w+)?\b", re.IGNORECASE)
# Kinds of sentence that carry a meeting's substance; each is worth the factor beside it.
_CUES: list[tuple[re.Pattern[str], float]] = [
    (re.compile(r"\b(?:decided|decision|agreed|agree on|let's go with|we'll go with|the plan is|going forward|"
                r"from now on|prioriti[sz]\w*|moves? to|postpone\w*|cancel\w*|is off|instead|freeze|"
                r"we'll (?:keep|drop|hold|go|use|move|stop|start)|let's (?:not|move|drop|keep|go|hold)|"
                r"won't|no longer|approved|the goal|headline|is planned|standard step)\b", re.IGNORECASE), 1.6),
    (re.compile(r"\b(?:risk\w*|problem\w*|issue\w*|concern\w*|worr\w*|block\w*|stuck|slow\w*|flak\w*|broke\w*|"
                r"fail\w*|crash\w*|bug\w*|outage\w*|delay\w*|slipp\w*|missing|bypass\w*|stale|expensive|tight\w*|"
                r"pain\w*|hurt\w*|never|nobody|lowest|confus\w*|late|overdue|over budget|sustainable|tricky|"
                r"difficult|hard part|doesn't|didn't|isn't|wasn't|weren't|can't|don't have|haven't)\b", re.IGNORECASE), 1.5),
    (re.compile(r"\b(?:has to|have to|must|needs? to be|at least|at most|no more than|deadline|signs? off|"
                r"requires?|only if|unless)\b", re.IGNORECASE), 1.3),
    (re.compile(r"\b(?:finished|done|shipped|closed|confirmed|in review|released|moved|caught|saved|went up|"
                r"went down|up from|down from|jumped|dropped|grew|growing|rate[sd]?)\b", re.IGNORECASE), 1.25),
]
_SMALL_TALK = re.compile(r"^(?:thanks|thank you|hey|hi|hello|morning|good morning|welcome|bye|see you|that's it|"
                         r"sounds good|great|perfect|cool|got it|makes sense|sure|understood|agreed|fine|okay|"
                         r"plus one|good idea|will do)\b", re.IGNORECASE)  # fmt: skip
_FILLER = re.compile(r"\b(?:um+|uh+|erm)\b,?\s*|(?:^|(?<=,))\s*(?:you know|i mean|like),\s*|,\s*(?:like|you know)(?=,)",
                     re.IGNORECASE)  # fmt: skip
_OPENERS = re.compile(r"^(?:(?:so|yeah|yes|okay|ok|right|well|and|alright|oh|honestly|basically|great|good|hm+|"
                      r"look|anyway|also|plus one|i think|i guess|i'd say|to be honest|actually|meanwhile|"
                      r"before we go further|on that|one note|one more thing|last thing|i'll be honest|"
                      r"for what it's worth|as i said|like i said|i can confirm(?: from [\w ]{1,20})?|"
                      r"here's what i'd suggest|if you ask me)\b[,.:]?\s+)+",
                      re.IGNORECASE)  # fmt: skip
_HEDGES = re.compile(r"\b(?:basically|honestly|actually|really|kind of|sort of|just)\s+(?=\w)", re.IGNORECASE)
_SPECIFIC = re.compile(r"(?<=\w[ ,])(?:[A-Z][a-z]*[A-Z0-9]\w*|[A-Z]{2,}\w*|[A-Z][a-z]+)\b")  # Samsung, WMS, Q2, p95
_FLOOR = re.compile(r"^(?:(?i:next|last|first|moving on|now|then|finally|lastly)\b[^.?!]{0,40}|"
                    r"[A-Z]\w+, [\w\s'-]{1,30}\b(?i:first|next|now|please|go ahead|you're up)|"
                    r"[\w\s'-]{1,30}, [A-Z][a-z]+)[.?!]?$")  # "Support backlog, Kate."
_TASKLIKE = re.compile(r"^(?:\w+, )?(?:i'll|i will|i can|i'm going to|we'll|please|"
                       r"(?:can|could|would) (?:you|one of you|someone|somebody|anyone))\b", re.IGNORECASE)  # fmt: skip
# Dialogue acts that carry no content of their own: reactions to what was said, talk about the meeting itself.
_REACTION = re.compile(r"^(?:(?:i|we) (?:noticed|agree|see|hear|like|love that|get it|hear you)|that(?:'s| is)? "
                       r"(?:matches|makes sense|works|sounds|would|helps|fair|true|right|interesting|useful)|"
                       r"this is (?:useful|helpful|great)|same (?:here|for me)|no promises)\b", re.IGNORECASE)  # fmt: skip
_META = re.compile(r"\b(?:let's (?:talk about|look at|start with|go through|get started|debrief|do the|keep it)|"
                   r"i (?:wanted|want) to (?:share|talk|go over|walk)|this is the (?:review|meeting|sync|call) for|"
                   r"quick (?:update|sync|weekly)|(?:first|next|last) (?:thing|item|up|topic)s? (?:is|today)|"
                   r"things today)\b", re.IGNORECASE)  # fmt: skip
# A reply that leans on the question before it: a yes or no, or a pronoun early on ("let's move it").
_ANSWER = re.compile(r"^(?:yes|yeah|yep|no|nope|agreed|sure|correct|right|definitely|probably|not)\b|"
                     r"^(?:\S+\s+){0,5}(?:it|that|this|them|those)\b", re.IGNORECASE)  # fmt: skip
# A subject or a verb form that makes a few words a clause rather than a fragment ("Let's go through it.").
_CLAUSE = re.compile(r"\b(?:i|we|you|he|she|it|they|there|let's|is|are|was|were|be|been|do|does|did|have|has|had|"
                     r"will|can|could|should|would|need|needs|go|get|got)\b|\w'(?:s|re|ll|ve|d|m|t)\b",
                     re.IGNORECASE)  # fmt: skip
_CONCESSION = re.compile(r"^([^,.?!]{2,40}), but (?=\w)", re.IGNORECASE)
_RECAP = re.compile(r"\b(?:to recap|to sum up|in short|bottom line|the upshot|so overall|the headline|long story short|"
                    r"in a nutshell|the (?:main|key|big) (?:point|takeaway|one|issue)|the takeaway)\b", re.IGNORECASE)
_TAG = re.compile(r",\s*(?:right|you know|i think|i guess|or something|though)\s*(?=[.?!]$)", re.IGNORECASE)


@dataclass(frozen=True)
class _Sentence:
    order: int
    speaker: str
    text: str  # compressed
    dialogue_id: str
    asked: tuple[str, str] | None = None  # (speaker, question) an answer needs to be understood

    @property
    def size(self) -> int:
        return len(words(self.text))

    @property
    def whole(self) -> str:
        """The sentence with the question it answers, if any: what a reader needs."""
        return f"{self.asked[1]} {self.text}" if self.asked else self.text


def clean(sentence: str) -> str:
    """A spoken sentence made readable and shorter: fillers, openers ("so, yeah, um"), hedges ("just",
    "kind of"), tags (", right?") and a concession without content words before "but" ("I won't go through
    all of it, but", "I know, but") dropped; every word that carries meaning kept."""
    text = _OPENERS.sub("", _FILLER.sub("", sentence)).strip()
    text = _TAG.sub("", _HEDGES.sub("", text)).strip()
    concession = _CONCESSION.match(text)
    if concession and not content_words(concession.group(1)):
        text = text[concession.end():]
    return text[:1].upper() + text[1:]


def _sentences(dialogues: Sequence[Dialogue]) -> list[_Sentence]:
    """The meeting's sentences, compressed. A fragment that trails a sentence of the same turn ("The chat widget
    especially.") is joined to it, as alone it says nothing. A turn's opening that answers a question someone
    else asked ("Agreed, let's move it to next sprint.") carries that question along (``_question_answered``),
    and so does the sentence after a short answer ("Yes, pause those. Actually, cancel them outright.")."""
    out: list[_Sentence] = []
    for d in dialogues:
        turn_start = len(out)
        for s in split_sentences(d.text):
            text = clean(s)
            if not words(text):
                continue
            if len(out) > turn_start and out[-1].speaker == d.speaker and _is_fragment(text, out[-1].text):
                out[-1] = replace(out[-1], text=f"{out[-1].text} {text}")
                continue
            asked = None
            if len(out) == turn_start and _ANSWER.match(text):
                asked = _question_answered(out[:turn_start], d.speaker)
            elif len(out) == turn_start + 1 and out[-1].asked and out[-1].size <= 4 and _ANSWER.match(text):
                asked = out[-1].asked  # "Yes, pause those. Actually, cancel them outright."
            out.append(_Sentence(len(out), d.speaker, text, d.dialogue_id, asked))
    return out


def _is_fragment(text: str, before: str) -> bool:
    """A few words that are no clause of their own, trailing a statement:
    "The chat widget especially.", "No blockers."; not "Let's go through it." (a clause), an acknowledgement, a
    question or a date of its own, and never after a question ("Can you take it? Ideally by Friday." stays a
    question and its deadline)."""
    return (len(words(text)) <= 4 and not _CLAUSE.search(text)
            and not text.endswith("?") and not before.endswith("?") and not _SMALL_TALK.match(text)
            and not find_dates(text, None))  # fmt: skip


def _question_answered(before: Sequence[_Sentence], speaker: str) -> tuple[str, str] | None:
    """(asker, question) that a turn by ``speaker`` opening with an answer replies to: a question of three
    content words or more among the last two sentences of the turn before ("Should we cut the ads? I'd set up a
    budget for them."), asked by someone else; else the question that turn itself answered, when its opening
    carried one and was short ("Are we still doing the cleanup?" "I'd push it." "Agreed, let's move it.")."""
    if not before or before[-1].speaker == speaker:
        return None
    turn = list(takewhile(lambda s: s.speaker == before[-1].speaker, reversed(before)))
    for s in turn[:2]:
        if s.text.endswith("?") and len(content_words(s.text)) >= 3:
            return s.speaker, s.text
    opening = turn[-1]
    short = len(turn) <= 2 and sum(t.size for t in turn) <= 12
    return opening.asked if short and opening.asked and opening.asked[0] != speaker else None


def textrank(texts: Sequence[str], damping: float = 0.85, iterations: int = 60) -> list[float]:
    """PageRank scores of sentences over the cosine similarity of their TF-IDF vectors (sum to 1)."""
    n = len(texts)
    if n == 0:
        return []
    unit = _unit_vectors(texts)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 0.0)
    sums = similarity.sum(axis=1, keepdims=True)
    transition = np.divide(similarity, sums, out=np.full_like(similarity, 1.0 / n), where=sums > 0)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        rank = (1 - damping) / n + damping * transition.T @ rank
    return [float(r) for r in rank / rank.sum()]


def _unit_vectors(texts: Sequence[str]) -> np.ndarray:
    """Unit-length TF-IDF vectors of the texts' content words (a row of zeros for a text without any)."""
    bags = [Counter(content_words(t)) for t in texts]
    df = Counter(w for bag in bags for w in bag)
    vocab = {w: i for i, w in enumerate(sorted(df))}
    matrix = np.zeros((len(texts), max(len(vocab), 1)))
    for i, bag in enumerate(bags):
        for w, c in bag.items():
            matrix[i, vocab[w]] = c * math.log((1 + len(texts)) / (1 + df[w]) + 1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def worth(text: str, centrality: float, names: frozenset[str] = frozenset(), tasks: Sequence[set[str]] = ()) -> float:
    """How much a (compressed) sentence is worth to a summary: its centrality (1 = average) times its kind.

    Substance (a decision, a problem, a constraint, an outcome, a figure) multiplies; questions, short
    acknowledgements and small talk divide. Content words per word count too: a dense sentence says more, and so
    does one that names specific things (products, systems, codes: not the meeting's people). A sentence the
    action items already say (``tasks``: their content words) is worth less, as the summary lists them."""
    n = len(words(text))
    own = set(content_words(text))
    content = len(content_words(text))
    value = (0.7 + 0.3 * min(centrality, 3.0)) * (0.5 + content / max(n, 1))
    specific = {m.group(0) for m in _SPECIFIC.finditer(text)} - names
    value *= 1 + 0.15 * min(len(specific), 3)
    if _RECAP.search(text):
        value *= 1.5
    if own and any(len(own & task) >= 0.5 * max(len(task), len(own)) for task in tasks if task):
        value *= 0.6  # the action items say it
    elif _TASKLIKE.search(text):
        value *= 0.4  # a commitment or a request: the action items' business, not the summary's
    first = text.split(maxsplit=1)[0].rstrip(",") if text.split() else ""
    if first in names and text[len(first):].startswith(","):
        value *= 0.6  # "Felix, crash rate first.": the floor handed over, or a request
    for cue, factor in _CUES:
        if cue.search(text):
            value *= factor
    if _FIGURE.search(text):
        value *= 1.5  # figures are what people come back for
    if find_dates(text, None):
        value *= 1.25  # and dates
    if _SMALL_TALK.match(text) and len(own - {n.lower() for n in names}) < 5:
        value *= 0.2
    if _REACTION.match(text) or _META.search(text):
        value *= 0.4
    if text.rstrip().endswith("?"):
        value *= 0.4
    if content < 3:
        value *= 0.3
    return value


def _without_dates(text: str) -> str:
    for mention in reversed(find_dates(text, None)):
        text = text[: mention.span[0]] + text[mention.end:]
    return text


def _says_something(text: str) -> bool:
    """At least three content words, a date counting as one, and not an acknowledgement or a turn of the floor
    ("Next, pricing page."); a sentence with a date needs six words, as a short one is only a task's deadline
    ("Ideally confirmed by next Friday.")."""
    dated = bool(find_dates(text, None))
    content = content_words(_without_dates(text))
    if dated and len(words(text)) < 6:
        return False
    return (len(content) + dated >= 3 and not (_SMALL_TALK.match(text) and len(content) < 5)
            and not _FLOOR.match(text))  # fmt: skip


def summarize(dialogues: Sequence[Dialogue], topics: Sequence[AgendaTopic], items: Sequence[ActionItem]) -> Summary:
    """Brief and detailed Markdown summaries of the whole meeting (pure; the same input gives the same text)."""
    sentences = _sentences(sorted(dialogues, key=lambda d: (d.start_ms, d.end_ms)))
    if not sentences:
        return Summary(brief="", detailed="")
    ranks = textrank([s.whole for s in sentences])
    people = frozenset(part for d in dialogues for part in d.speaker.split())
    tasks = [set(content_words(item.description)) for item in items]
    score = [worth(s.whole, r * len(sentences), people, tasks) for s, r in zip(sentences, ranks, strict=True)]
    titled = {w for t in topics for w in content_words(t.title)}  # the agenda's words, else the topics' keywords
    for s in sentences:  # "Four things today: the crash rate, the pricing page..." restates the topics
        own = set(content_words(s.whole))
        if len(own) >= 3 and len(own & titled) >= 0.5 * len(own):
            score[s.order] *= 0.5
    unit = _unit_vectors([s.whole for s in sentences])
    similarity = unit @ unit.T
    names = _short_names([d.speaker for d in dialogues])
    total = sum(len(words(d.text)) for d in dialogues)
    if not any(t.agenda_item for t in topics) and total < MIN_SECTION_WORDS * len(topics):
        topics = []  # found topics of a short meeting: a few turns each, where a heading costs more than it tells
    sections = _sections(sentences, topics)
    budget = max(MIN_WORDS, WORD_SHARE * total)
    section_of = {s.order: k for k, (_, part) in enumerate(sections) for s in part}
    heading_cost = [len(words(_heading(t))) for t, _ in sections]
    length = {s.order: len(words(s.whole)) + len(words(names[s.speaker])) * (2 if s.asked else 1)
              for s in sentences}  # what a sentence costs alone, which its worth is weighed against
    chosen: list[int] = []

    def cost(s: _Sentence) -> int:
        """The words ``s`` adds to the summary as it stands: its text and speaker name, not the name when it
        joins the line of the same turn's sentence before it, and its section's heading when it is the first."""
        size = length[s.order]
        before = sentences[s.order - 1] if s.order else None
        if before and before.order in chosen and before.dialogue_id == s.dialogue_id and not (s.asked or before.asked):
            size -= len(words(names[s.speaker]))
        if not any(section_of[c] == section_of[s.order] for c in chosen):
            size += heading_cost[section_of[s.order]]
        return size

    used = 0.0
    worthy = {s.order for s in sentences if _says_something(s.whole)}
    bar = float(np.median([score[o] for o in worthy])) if worthy else 0.0  # a topic's best must be worth a line
    for _, part in sections:  # every topic keeps its best sentence, unless another topic's says it already
        best = max(part, key=lambda s: (s.order in worthy, score[s.order]))
        if (score[best.order] >= bar and all(similarity[best.order, c] < 0.5 for c in chosen)
                and used + cost(best) <= budget):  # fmt: skip
            used += cost(best)
            chosen.append(best.order)
    while True:  # then the best of the rest, anywhere, each as new as it is good (MMR)
        costs = {s.order: cost(s) for s in sentences if s.order not in chosen and s.order in worthy}
        candidates = [(score[s.order] * (1 - MMR_REDUNDANCY * max((similarity[s.order, c] for c in chosen), default=0))
                       * len(content_words(s.whole)) ** 0.5 / length[s.order] ** LENGTH_EXPONENT, -s.order)
                      for s in sentences if s.order in costs
                      and max((similarity[s.order, c] for c in chosen), default=0) < SAME
                      and used + costs[s.order] <= budget]  # fmt: skip
        candidates = [c for c in candidates if c[0] > 0]
        if not candidates:
            break
        order = -max(candidates)[1]
        chosen.append(order)
        used += costs[order]
    picked = set(chosen)
    detailed = [_section(topic, [s for s in part if s.order in picked], names) for topic, part in sections
                if any(s.order in picked for s in part)]
    if items:
        detailed.append("### Action items\n" + "\n".join(_item_line(i) for i in items))
    return Summary(brief=_brief(sentences, chosen, score, similarity, total), detailed="\n\n".join(detailed))


def _brief(sentences: Sequence[_Sentence], chosen: Sequence[int], score: Sequence[float], similarity: np.ndarray,
           total: int) -> str:  # fmt: skip
    """The best of the detailed summary's sentences, not two alike, within BRIEF_SHARE, in the order said."""
    budget = max(MIN_WORDS, BRIEF_SHARE * total)
    brief: list[int] = []
    used = 0
    for order in sorted(chosen, key=lambda o: (-score[o], o)):
        size = len(words(sentences[order].whole))
        if len(brief) == BRIEF_MAX:
            break
        if (brief and used + size > budget) or any(similarity[order, b] > 0.5 for b in brief):
            continue
        brief.append(order)
        used += size
    return "\n".join(f"- {sentences[o].whole}" for o in sorted(brief))


def _sections(sentences: Sequence[_Sentence], topics: Sequence[AgendaTopic]
              ) -> list[tuple[AgendaTopic | None, list[_Sentence]]]:  # fmt: skip
    """The sentences cut into runs of one topic each, in meeting order."""
    section_of = {d: t for t in topics for d in t.dialogue_ids}
    sections: list[tuple[AgendaTopic | None, list[_Sentence]]] = []
    for s in sentences:
        topic = section_of.get(s.dialogue_id)
        if not sections or sections[-1][0] is not topic:
            sections.append((topic, []))
        sections[-1][1].append(s)
    return sections


def _short_names(speakers: Sequence[str]) -> dict[str, str]:
    """Each speaker by first name, or by full name where two share a first name."""
    firsts = Counter(s.split()[0] if s.split() else s for s in set(speakers))
    return {s: s.split()[0] if s.split() and firsts[s.split()[0]] == 1 else s for s in speakers}


def _heading(topic: AgendaTopic | None) -> str:
    return f"### {topic.title} ({_clock(topic.start_ms)})" if topic else "### Discussion"


def _section(topic: AgendaTopic | None, part: Sequence[_Sentence], names: dict[str, str]) -> str:
    """A topic's heading, then its chosen sentences; one speaker's consecutive sentences share a line."""
    lines: list[tuple[str, list[str]]] = []
    previous, exchange = -2, False
    for s in part:
        if lines and lines[-1][0] == s.speaker and s.order == previous + 1 and not s.asked and not exchange:
            lines[-1][1].append(s.text)
        elif s.asked and not (lines and s.order == previous + 1):  # the exchange on one line
            lines.append((s.asked[0], [s.asked[1], f"**{names[s.speaker]}:** {s.text}"]))
        else:
            lines.append((s.speaker, [s.text]))
        previous, exchange = s.order, bool(s.asked)
    return _heading(topic) + "\n" + "\n".join(f"- **{names.get(who, who)}:** {' '.join(said)}" for who, said in lines)


def _item_line(item: ActionItem) -> str:
    who = item.assignee or "unassigned"
    due = f", due {item.due_date.isoformat()}" if item.due_date else ""
    flag = f", {item.priority} priority" if item.priority != "normal" else ""
    return f"- [ ] {item.description} ({who}{due}{flag})"


def _clock(ms: int) -> str:
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
