"""Action items of a meeting, read turn by turn the way a note-taker would.

A task is said as a commitment ("I'll send the quote by Thursday"), a request ("Tom, could you check with
design? Ideally by Friday."), a third party ("let's have Ben add them"), a proposal ("someone should call the
ISP"), or a question someone agrees to ("Should we load test it?" "Yes, I'll run one."). The conversation
around a mention decides the rest:

- assignee: the speaker of a commitment; the one addressed by name; the other person in a two-person
  meeting; the one who accepts an open request ("Who can set those up?" "That's on me."). Otherwise it
  stays empty: an assignee is never guessed;
- a pronoun ("I'll do it", "send them") refers to a task of the last three turns, else to the thing just
  named ("The moving company needs the final floor plan." "I'll send it to them.");
- dates said next to a task ("Ideally by Friday.", "Give me until next Wednesday.") set its due date; a
  later explicit date replaces an earlier one, but a bare date does not replace a deadline said with "by",
  "before" or "until" ("I'll email them today" is a first step); a date in reported speech ("they said they
  need to decide by Monday") is someone else's, and days named together ("Wednesday and Thursday") are
  slots, not a deadline; "same deadline as the screens" copies another task's;
- restatements merge into one item; a task the meeting cancels ("forget the registration page", "let's not
  do that after all") is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise

from enrichment.dates import find_dates
from enrichment.model import ActionItem, MeetingTranscript
from enrichment.phrases import clean_description, noun_phrases, substitute
from enrichment.task_cues import (
    PRONOUNS,
    Mention,
    demonstrative_noun,
    find_mentions,
    is_hedged,
    new_content,
    strip_intro,
    task_verb,
    vocative,
)
from enrichment.text import content_words, dice, split_sentences, stem

ANYONE = "*"  # asked of whoever answers
WINDOW_TURNS = 2  # a pronoun may point back this many turns before its own
MERGE_SIMILARITY = 0.5

_ACCEPT = re.compile(r"^(?:\w+,?\s+)?(?:sure|yes|yeah|yep|yup|okay|ok|absolutely|of course|will do|on it|"
                     r"no problem|sounds good|got it|can do|happy to|definitely|certainly|gladly)\b", re.IGNORECASE)  # fmt: skip
_CANCEL = re.compile(
    r"^(?:let's not|let's drop|let's skip|let's scrap|let's cancel|let's forget(?: about)?|let's hold off on|"
    r"we (?:can|could) (?:drop|skip|forget)|forget(?: about)?|scratch|scrap|never mind|call off|no need (?:to|for)|"
    r"don't bother(?: with)?|we don't need(?: to)?|we won't need(?: to)?|we're not (?:doing|going to do))\b(?P<x>.*)$",
    re.IGNORECASE,
)
_CANCEL_FILLER = re.compile(r"\b(?:do|doing|go with|go ahead with|bother with|after all|anymore|any more|then|"
                            r"for now|about)\b", re.IGNORECASE)  # fmt: skip
_HIGH = re.compile(r"\b(?<!not )(?:urgent(?:ly)?|asap|as soon as (?:possible|you can)|right away|immediately|"
                   r"top priority|high priority|highest priority|critical|time[- ]sensitive)\b", re.IGNORECASE)  # fmt: skip
_LOW = re.compile(r"\b(?:when(?:ever)? you (?:have|get) (?:the |some )?(?:time|a chance|a minute)|no (?:huge |big |real )?"
                  r"rush|no pressure|low priority|nice to have|not urgent|if you have time|at some point)\b",
                  re.IGNORECASE)  # fmt: skip
# Reported speech: what follows is someone else's words, so a date there is theirs ("they said ... by Monday").
_REPORTED = re.compile(r"\b(?:they|he|she|[A-Z][a-z]+) (?:said|says|mentioned|told (?:us|me|you|them))\b")
_SLOTS = re.compile(r",?\s*(?:and|or|,)\s*(?:on\s+)?", re.IGNORECASE)  # "Wednesday and Thursday", "Monday or Tuesday"
_SAME_DEADLINE = re.compile(r"\bsame (?:deadline|timeframe|time ?frame|due date|date)(?: as (?:the )?(?P<x>[\w -]+))?",
                            re.IGNORECASE)  # fmt: skip
_CLAUSES = re.compile(r";\s*|:\s+|(?=,\s*so\b)|(?=,\s*(?:and|but)\s+(?:I|I'm|I'll|we)\b)")


def priority_of(text: str) -> str:
    """high, low or normal, from the wording ("urgent", "asap"; "when you have time", "no rush")."""
    if _LOW.search(text):
        return "low"
    return "high" if _HIGH.search(text) else "normal"


def split_clauses(sentence: str) -> list[str]:
    return [c.strip(" ,") for c in _CLAUSES.split(sentence) if c.strip(" ,")]


@dataclass
class _Draft:
    description: str
    assignee: str = ""
    requested_of: str = ""
    due: date | None = None
    due_firm: bool = False  # said with "by", "before", "until": a later bare date does not replace it
    start: date | None = None
    priority: str = "normal"
    dialogue_ids: list[str] = field(default_factory=list)
    confirmed: bool = True
    needs_taker: bool = False  # a bare order to the room: a task only once someone takes it
    cancelled: bool = False
    turn: int = 0

    def words(self) -> set[str]:
        return set(content_words(self.description))

    def takes(self, person: str) -> bool:
        """Whether ``person`` may own it: nobody owns it yet, or it is theirs or was asked of them."""
        return self.assignee in ("", person) and self.requested_of in ("", person, ANYONE)


@dataclass
class _Said:
    turn: int
    speaker: str
    text: str


class _Meeting:
    def __init__(self, transcript: MeetingTranscript):
        self.people = list(transcript.people())
        self.meeting_date = transcript.meeting_date
        self.aliases = _aliases(self.people)
        self.names = sorted(self.aliases, key=len, reverse=True)
        self.drafts: list[_Draft] = []
        self.said: list[_Said] = []
        self.firm = False  # whether the last due date read was said with "by", "before", "until"
        self.earlier = ""  # the clauses of the sentence being read before the current one

    # --- reading ---------------------------------------------------------------------------------------

    def read_turn(self, turn: int, dialogue_id: str, speaker: str, text: str, previous: _Said | None) -> None:
        speaker = self.aliases.get(speaker, speaker)
        answer_to = self._awaiting(turn, speaker)
        self.focus: _Draft | None = answer_to
        self.answering = False
        self.addressed = ""
        self.delegable: _Draft | None = None
        sentences = split_sentences(text)
        for index, sentence in enumerate(sentences):
            context = " ".join(sentences[max(0, index - 2): index + 1])
            clauses = split_clauses(sentence)
            for position, clause in enumerate(clauses):
                self.earlier = " ".join(clauses[:position])  # what this sentence said before the clause
                named = vocative(clause, self.names)
                if named:
                    self.addressed = self.aliases[named]
                if self._cancel(strip_intro(_without_vocative(clause, self.addressed, self.aliases)), turn):
                    continue
                if _ACCEPT.match(clause) and answer_to is not None and not self.answering and not is_hedged(clause):
                    self._accept(answer_to, speaker, turn, dialogue_id)
                mentions = find_mentions(clause, self.names)
                for mention in mentions:
                    for part in _conjuncts(mention):
                        self._apply(part, clause, context, speaker, turn, dialogue_id, previous)
                if all(m.hedged for m in mentions):  # "the cap needs a window, so by next week": the cap's date
                    topic = clauses[position - 1] if position and clause.lower().startswith("so ") else ""
                    self._follow_up(clause, topic, turn, dialogue_id)
            self.said.append(_Said(turn, speaker, sentence))

    def _awaiting(self, turn: int, speaker: str) -> _Draft | None:
        """The task of the previous turn this speaker may be answering, if any."""
        if not self.said or self.said[-1].speaker == speaker:
            return None
        for draft in reversed(self.drafts):
            if draft.turn != turn - 1 or draft.cancelled:
                continue
            if draft.requested_of in (speaker, ANYONE) or draft.assignee == speaker or not draft.confirmed or (
                draft.assignee == "" and draft.requested_of == ""
            ):
                return draft
        return None

    def _accept(self, draft: _Draft, speaker: str, turn: int, dialogue_id: str) -> None:
        draft.confirmed = True
        if draft.requested_of in (speaker, ANYONE) and draft.assignee == "":
            draft.assignee = speaker
            draft.needs_taker = False
        self._touch(draft, turn, dialogue_id)
        self.focus, self.answering = draft, True

    def _cancel(self, clause: str, turn: int) -> bool:
        m = _CANCEL.match(clause)
        if not m:
            return False
        target_words = set(content_words(_CANCEL_FILLER.sub(" ", m.group("x"))))
        live = [d for d in self.drafts if not d.cancelled]
        if not target_words - PRONOUNS:
            recent = [d for d in live if d.turn >= turn - WINDOW_TURNS]
            if recent:
                recent[-1].cancelled = True
            return True
        for draft in live:
            if len(target_words & draft.words()) / len(target_words) >= 0.6:
                draft.cancelled = True
        return True

    # --- mentions --------------------------------------------------------------------------------------

    def _apply(self, m: Mention, clause: str, context: str, speaker: str, turn: int, dialogue_id: str,
               previous: _Said | None) -> None:  # fmt: skip
        if m.hedged:
            return
        assignee, requested_of, needs_taker = self._who(m, clause, speaker, previous)
        due, start = self._dates(clause[m.start:] if m.kind != "imperative" else clause, clause)
        priority = priority_of(context)
        draft: _Draft | None = None
        if m.anaphoric:
            draft = self._antecedent(turn, assignee or speaker if m.kind in ("commit", "volunteer") else assignee,
                                     clause, m)  # fmt: skip
            noun = demonstrative_noun(m.verb_phrase)
            if draft is not None and m.pronoun and not noun and draft.turn < turn:
                draft = self._named_in_sentence(draft, m, clause, turn, dialogue_id) or draft
            if draft is None and m.kind in ("commit", "request", "third", "imperative", "yours", "open"):
                draft = self._from_referent(m, turn, dialogue_id)  # "send it" -> "send the floor plan"
            if draft is None and m.verb_phrase and new_content(m.verb_phrase) >= (1 if noun else 2):
                draft = self._new(m.verb_phrase, turn, dialogue_id)  # "expose that endpoint"
            if draft is None:
                return
            if draft.turn == turn and len(draft.dialogue_ids) == 1 and draft is self.drafts[-1]:
                draft.needs_taker = needs_taker
        elif (self.answering and self.focus is not None and self.focus.takes(assignee or speaker)
              and m.kind in ("commit", "proposal")):  # fmt: skip
            draft = self.focus  # "Sure. I'll reach out today." adds to what was just accepted
            self._add_step(draft, m.verb_phrase)
            if draft.due:
                due = None  # a sub-step's date does not move the task's
        elif (self.delegable is not None and m.kind in ("request", "imperative", "third") and assignee
              and self.delegable.turn == turn):  # fmt: skip
            draft = self.delegable  # "Let's get a fresh number. Raj, would you grab the p95?"
            self._add_step(draft, m.verb_phrase)
        else:
            draft = self._new(m.verb_phrase, turn, dialogue_id)
            draft.confirmed = m.kind != "question"
            draft.needs_taker = needs_taker
        if m.kind in ("proposal",) and not assignee:
            self.delegable = draft
        if assignee and draft.takes(assignee) and draft.assignee == "":
            draft.assignee = assignee
            draft.needs_taker = False
            if self.focus is draft or m.kind in ("commit", "volunteer"):
                draft.confirmed = True
        elif not assignee and requested_of and not draft.assignee:
            draft.requested_of = requested_of
        if m.kind in ("commit", "volunteer", "request", "imperative", "third", "need"):
            draft.confirmed = True
        later_bare = draft.due_firm and not self.firm  # "by Friday", then "I'll email them today": a step
        if due and not later_bare and (draft.due is None or m.pronoun or not m.anaphoric or draft.assignee != speaker
                                       or not self.answering):  # fmt: skip
            draft.due, draft.due_firm = due, self.firm
        if start:
            draft.start = start
        if priority != "normal":
            draft.priority = priority
        self._touch(draft, turn, dialogue_id)
        self.focus = draft
        if m.anaphoric and draft in self.drafts and draft.turn == turn:
            self.answering = self.answering or m.kind in ("commit", "volunteer")

    def _who(self, m: Mention, clause: str, speaker: str, previous: _Said | None) -> tuple[str, str, bool]:
        """(assignee, asked of, needs a taker) of a mention."""
        if m.kind in ("commit", "volunteer"):
            return speaker, "", False
        if m.kind == "need":
            named = self.aliases.get(m.vocative, "") or self.addressed
            return (named, "", False) if named and named != speaker else ("", ANYONE, True)
        if m.kind == "third":
            return self.aliases.get(m.name, m.name), "", False
        if m.kind in ("proposal", "question"):
            return "", "", False
        if m.kind == "open":
            return "", ANYONE, False
        named = self.aliases.get(m.vocative, "") or self.addressed
        if named and named != speaker:
            return named, "", False
        others = [p for p in self.people if p != speaker]
        if len(self.people) == 2 and len(others) == 1:
            return others[0], "", False
        if m.kind == "imperative" and previous is not None and previous.speaker != speaker and "?" in previous.text:
            return previous.speaker, "", False  # the answer to their question: "Should we cut the ads?" "Yes, pause those."
        return "", ANYONE, m.kind == "imperative"

    def _antecedent(self, turn: int, person: str, clause: str, m: Mention) -> _Draft | None:
        """The task of the last turns a pronoun points to: one sharing words with the clause, else the latest."""
        candidates = [d for d in self.drafts if not d.cancelled and d.turn >= turn - WINDOW_TURNS
                      and (d.takes(person) if person else True)]  # fmt: skip
        noun = demonstrative_noun(m.verb_phrase)
        if noun:  # "that endpoint" is a task about an endpoint, or the one just said
            candidates = [d for d in candidates if stem(noun) in d.words() or d.turn == turn]
        if not candidates:
            return None
        words = set(content_words(clause)) - PRONOUNS
        scored = [(len(words & d.words()), i) for i, d in enumerate(candidates)]
        best = max(scored)
        return candidates[best[1]]

    def _named_in_sentence(self, earlier: _Draft, m: Mention, clause: str, turn: int, dialogue_id: str) -> _Draft | None:
        """A new task for a pronoun that stands for a thing named earlier in its own sentence, when the task of
        an earlier turn it would otherwise take shares no word with that sentence ("Grace, you own that
        renewal, so let's get it signed": the renewal, not the task said before)."""
        sentence_words = set(content_words(f"{self.earlier} {clause}")) - PRONOUNS
        phrases = noun_phrases(self.earlier, demonstratives=True) if self.earlier else []
        if not phrases or sentence_words & earlier.words():
            return None
        return self._new(substitute(m.verb_phrase, m.pronoun, phrases[-1]), turn, dialogue_id)

    def _from_referent(self, m: Mention, turn: int, dialogue_id: str) -> _Draft | None:
        """A new task whose pronoun is replaced by the thing last named ("send it" -> "send the floor plan")."""
        noun = demonstrative_noun(m.verb_phrase) if task_verb(m.verb_phrase) else ""
        for said in reversed(self.said[-4:]):
            if said.turn < turn - 1:
                break
            phrases = noun_phrases(said.text)
            phrases = [p for p in phrases if not any(q != p and q.endswith(f" {p}") for q in phrases)]  # "our side"
            if noun:  # is part of "a validation bug on our side", not a thing of its own
                phrases = [p for p in phrases if noun in p.lower() or noun.rstrip("s") in p.lower()]
            elif m.kind != "yours" and phrases:
                phrases = phrases[:1] if _has_need(said.text) else phrases[-1:]
            if not phrases:
                continue
            phrase = max(phrases, key=len) if noun else phrases[0]
            if m.kind == "yours":
                text = phrase
            elif noun:
                text = re.sub(rf"\b(?:that|this|those|these) {noun}\b", phrase, m.verb_phrase, count=1,
                              flags=re.IGNORECASE)  # fmt: skip
            elif m.pronoun:
                text = substitute(m.verb_phrase, m.pronoun, phrase)
            else:
                return None
            draft = self._new(text, turn, dialogue_id)
            due = [d.value for d in find_dates(said.text, self.meeting_date) if d.value]
            if due:
                draft.due = due[-1]
            return draft
        return None

    def _follow_up(self, clause: str, topic: str, turn: int, dialogue_id: str) -> None:
        """A clause with a date and no task of its own dates the task it talks about: one of this turn that
        shares its words, else the one in focus ("Ideally by Friday.", "The cap realistically by the end of
        next week.")."""
        due, start = self._dates(clause, clause)
        if not (due or start):
            return
        words = set(content_words(_without_dates(f"{topic} {clause}")))
        this_turn = [d for d in self.drafts if d.turn == turn and not d.cancelled]
        sharing = [d for d in this_turn if words & d.words()]
        target = sharing[-1] if sharing else self.focus
        answer = re.search(r"\b(?:let's say|give me until|aiming for|make it|how about|say)\b", clause, re.IGNORECASE)
        if target is None or target.cancelled or (not sharing and not answer and len(words) > 2):
            return  # a clause about something else ("please log off at a normal hour tonight")
        if due:
            target.due, target.due_firm = due, self.firm
        if start:
            target.start = start
        self._touch(target, turn, dialogue_id)

    def _dates(self, text: str, clause: str) -> tuple[date | None, date | None]:
        """(due, start) said in ``text``: a date after "by"/"before"/"until" wins over a bare one (``self.firm``
        tells which it was)."""
        self.firm = False
        same = _SAME_DEADLINE.search(clause)
        if same:
            return self._same_deadline_as(same.group("x") or ""), None
        owner = re.search(r"\bbefore (\w+(?: \w+)?)'s deadline\b", clause)
        if owner and self.aliases.get(owner.group(1)):
            dated = [d for d in self.drafts if d.assignee == self.aliases[owner.group(1)] and d.due]
            return (dated[-1].due if dated else None), None
        reported = _REPORTED.search(text)
        if reported:  # "..., they said they need to decide by Monday": their date, not the task's
            text = text[: reported.start()]
        mentions = [d for d in find_dates(text, self.meeting_date) if d.value]
        starts = [d.value for d in mentions if d.role == "start"]
        dues = [d for d in mentions if d.role == "due"]
        firm = [d for d in dues if re.match(r"(?:by|before|until|till|due|no later than)\b", text[d.span[0]:], re.IGNORECASE)]
        if not firm and any(_SLOTS.fullmatch(text[a.end:b.start]) for a, b in pairwise(dues)):
            return None, (starts[-1] if starts else None)  # "for Wednesday and Thursday": slots, not a deadline
        due = (firm or dues)[-1].value if dues else None
        self.firm = bool(firm)
        return due, (starts[-1] if starts else None)

    def _same_deadline_as(self, what: str) -> date | None:
        dated = [d for d in self.drafts if d.due and not d.cancelled]
        words = set(content_words(what))
        sharing = [d for d in dated if words & d.words()]
        return (sharing or dated)[-1].due if (sharing or dated) else None

    # --- drafts ----------------------------------------------------------------------------------------

    def _new(self, verb_phrase: str, turn: int, dialogue_id: str) -> _Draft:
        draft = _Draft(clean_description(verb_phrase), turn=turn, dialogue_ids=[dialogue_id])
        self.drafts.append(draft)
        return draft

    def _add_step(self, draft: _Draft, verb_phrase: str) -> None:
        """Fold a restatement or a sub-step into a task: the wordier description wins; a sub-step with
        enough new words is appended ("...; move the schedule to 3 a.m.")."""
        step = clean_description(verb_phrase)
        step_words, have = set(content_words(step)), draft.words()
        if not step_words:
            return
        if new_content(verb_phrase) >= 2 and len(step_words - have) / len(step_words) >= 0.5:
            draft.description = f"{draft.description}; {step[:1].lower()}{step[1:]}" if draft.description else step
        elif len(step_words) > len(have):
            draft.description = step

    def _touch(self, draft: _Draft, turn: int, dialogue_id: str) -> None:
        draft.turn = turn
        if dialogue_id not in draft.dialogue_ids:
            draft.dialogue_ids.append(dialogue_id)

    def items(self) -> list[ActionItem]:
        live = [d for d in self.drafts if not d.cancelled and d.confirmed and not (d.needs_taker and not d.assignee)
                and new_content(d.description) + (1 if task_verb(d.description) is None else 0) >= 1]  # fmt: skip
        merged: list[_Draft] = []
        for draft in live:
            twin = next((m for m in merged if (m.assignee == draft.assignee or "" in (m.assignee, draft.assignee))
                         and dice(m.words(), draft.words()) >= MERGE_SIMILARITY), None)  # fmt: skip
            if twin is None:
                merged.append(draft)
                continue
            twin.assignee = twin.assignee or draft.assignee
            twin.due = draft.due or twin.due
            twin.start = draft.start or twin.start
            twin.priority = draft.priority if draft.priority != "normal" else twin.priority
            twin.dialogue_ids += [i for i in draft.dialogue_ids if i not in twin.dialogue_ids]
            if len(draft.words()) > len(twin.words()):
                twin.description = draft.description
        return [ActionItem(description=d.description, assignee=d.assignee if d.assignee != ANYONE else "",
                           start_date=d.start, due_date=d.due, priority=d.priority,  # type: ignore[arg-type]
                           dialogue_ids=tuple(d.dialogue_ids)) for d in merged]  # fmt: skip


def extract_action_items(transcript: MeetingTranscript) -> list[ActionItem]:
    """The meeting's tasks, in the order they were first said; pure and deterministic."""
    meeting = _Meeting(transcript)
    previous: _Said | None = None
    for turn, dialogue in enumerate(transcript.dialogues):
        meeting.read_turn(turn, dialogue.dialogue_id, dialogue.speaker, dialogue.text, previous)
        previous = _Said(turn, meeting.aliases.get(dialogue.speaker, dialogue.speaker), dialogue.text)
    return meeting.items()


def _aliases(people: list[str]) -> dict[str, str]:
    """Every way a participant may be named (full, first, last name) -> the participant; a first or last
    name two people share is left out, so it never picks one of them."""
    counts: dict[str, int] = {}
    for person in people:
        for alias in {person, *person.split()}:
            counts[alias] = counts.get(alias, 0) + 1
    return {alias: person for person in people for alias in {person, *person.split()}
            if counts[alias] == 1 and alias[:1].isupper()}  # fmt: skip


def _conjuncts(m: Mention) -> list[Mention]:
    """"drop the alert to seventy percent and add a per-client cap" is two tasks; "call the ISP and confirm
    the date" is one (each half must name two things of its own)."""
    if m.anaphoric or not m.verb_phrase:
        return [m]
    parts = re.split(r"\s+and\s+(?=\w+)", m.verb_phrase)
    if len(parts) != 2 or task_verb(parts[1]) is None:
        return [m]
    if new_content(parts[0]) >= 2 and new_content(parts[1]) >= 2:
        return [Mention(m.kind, p, m.start, m.name, m.vocative, m.hedged, False, "") for p in parts]
    return [m]


def _without_dates(text: str) -> str:
    for mention in reversed(find_dates(text, None)):
        text = text[: mention.start] + text[mention.end:]
    return text


def _has_need(sentence: str) -> bool:
    return bool(re.search(r"\b(?:need|needs|want|wants|require|requires)\b(?!\s+to\b)", sentence, re.IGNORECASE))


def _without_vocative(clause: str, name: str, aliases: dict[str, str]) -> str:
    if not name:
        return clause
    for alias, person in aliases.items():
        if person == name:
            clause = re.sub(rf"^(.*?\b){re.escape(alias)},\s*", r"\1", clause, count=1)
    return clause
