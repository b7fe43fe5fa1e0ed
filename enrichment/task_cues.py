"""Clause-level cues for action items: who is asked or offers to do what, in a meeting's own words.

``find_mentions`` reads one clause and returns the task mentions in it (a commitment "I'll ...", a request
"can you, Bob, ...", a third party "let's have Carol ...", a proposal "someone should ...", a question
"should we ...?", an imperative "Hiro, get ... by ..."), each with the verb phrase that describes the task.
Who the clause is addressed to, and what a pronoun refers to, is decided by enrichment/tasks.py, which
sees the conversation around it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from enrichment.dates import find_dates
from enrichment.text import content_words, lexicon

# Verbs that name something to do after the meeting. A whitelist: an unknown verb after "I'll" is more
# often talk ("I'll be honest", "I will say") than a task.
ACTION_VERBS = lexicon(
    """add address adjust align analyse analyze answer approve archive arrange ask assemble assess assign audit
    automate benchmark book brief bring build buy calculate call cancel capture chase check circulate clean clear
    close coach collect combine communicate compare compile complete configure confirm connect consider
    consolidate contact convert coordinate copy correct create cut debug define delete deliver demo deploy design
    document do download draft draw drop edit email enable escalate estimate evaluate expand export expose extend
    file fill finalize finalise find finish fix flag follow forward gather generate get give grab handle have help
    hire implement improve inform install integrate interview investigate invite invoice label launch lead let
    line list load locate lock look loop lower make manage map mask measure merge migrate mock monitor move
    negotiate notify open order organise organize own patch pay ping pitch plan poll post prep prepare present
    print prioritize prioritise process produce profile prototype provide provision publish pull purchase push put
    raise reach read rebuild recount record redo reduce refactor remind remove rename renew reorganize repair
    replace reply report request research reschedule reserve reset resolve respond restart restore retest return
    review revise rework rewrite roll rotate route run schedule scope script send set settle share ship shorten
    sign sketch sort speak split spin start stub submit summarize summarise support survey swap swing sync take
    talk tell test tidy track train transfer translate triage trim tweak update upgrade upload validate verify
    wire work write"""
)
# Verb phrases that are the meeting itself, not work after it ("let's look at the backlog", "can you walk us
# through the timeline?").
_IN_MEETING = re.compile(
    r"^(?:walk|kick|go (?:through|over|ahead|around|first|back)|look at|talk (?:about|through)|discuss|"
    r"start (?:with|off)|get (?:started|going|to |into|back|on with)|move on|keep (?:it|this)|wrap|recap|decide|"
    r"think|say|hear|see|take (?:a (?:look|step|second|minute|break)|stock)|focus|begin|continue|repeat|explain|"
    r"clarify|elaborate|introduce|share (?:your|my|the) screen|remind us|(?:tell|show|give|take) (?:us|me)\b|"
    r"confirm (?:from|that|this|it)\b|check (?:that|this) (?:out)?\b|"
    r"give (?:the|a|an|your) (?:short|quick|brief)? ?(?:version|update|overview|summary)|run it\b)",
    re.IGNORECASE,
)
_COMPLETION = re.compile(r"\b(?:done|ready|in|out|live|finished|merged|fixed|running|up|over|sorted|final|"
                         r"to \w+|exposed|provisioned|booked|sent)\b")  # fmt: skip
PRONOUNS = frozenset({"it", "that", "them", "those", "this", "these", "one"})
_PARTICLES = frozenset({"up", "out", "in", "over", "off", "back", "together", "down", "through", "by"})
_LEADING_ADVERBS = re.compile(
    r"^(?:(?:also|just|probably|definitely|quickly|then|still|actually|really|maybe|first|now|gladly|"
    r"go ahead and|try to|try and|make sure to|be sure to|be able to|mind)\s+)+",
    re.IGNORECASE,
)
_SUBORDINATE = re.compile(r"(?:\b(?:if|when|whenever|once|unless|because|since|while|before|after|until|whether|"
                          r"in case|whoever)|\bso(?: that)?(?=\s+\w+\s+(?:can|could|will|'ll|would)\b))\s*$",
                          re.IGNORECASE)  # fmt: skip
_PURPOSE = re.compile(r"\bso(?: that)?\s*$", re.IGNORECASE)
_HEDGE = re.compile(r"\b(?:unless|not sure|might|if I have time|if I get time|I guess)\b", re.IGNORECASE)
_VP_END = re.compile(
    r"(?:,?\s+(?:so|because|since|while|unless|if|once|before|after|when|whenever|otherwise|but|which|though|"
    r"although|until|instead of)\b|[,?!.;:]|\s+-\s+)",
    re.IGNORECASE,
)
_FIRST_PERSON = re.compile(
    r"\b(?:I(?:'ll| will| can| could| shall| am going to|'m going to|'m gonna| am gonna| need to| have to|"
    r"'ve got to| must| should|'m planning to| am planning to| plan to|'m aiming to| am aiming to| aim to|"
    r"intend to)|let me)\b(?!'t|n't| not)",
    re.IGNORECASE,
)
_VOLUNTEER = re.compile(r"\b(?:that's on me|that one's mine|leave it with me|I've got (?:it|this|that)|"
                        r"I'll take (?:it|that|this)|I can take (?:it|that|this)|count me in|I'm on it)\b",
                        re.IGNORECASE)  # fmt: skip
_REQUEST = re.compile(
    r"\b(?i:(?:can|could|would|will) you(?:r team)?|I need you to|I'd like you to|I want you to|you need to|"
    r"you should|you'll need to|you have to|you could)\b(?:,? (?P<voc>[A-Z]\w+(?: [A-Z]\w+)?),)?",
)
# "Kevin, the reporting job needs to go through the pool": a need put to the one addressed.
_NEED = re.compile(r"^(?P<np>(?:the|our|this|that|your) [\w -]+?) (?:needs to|has to|must|should) (?P<vp>\w+)",
                   re.IGNORECASE)  # fmt: skip
_OBJECT_START = frozenset({"the", "a", "an", "my", "your", "our", "their", "his", "her", "both", "all", "each",
                           "every", "some", "two", "three", "me", "him", "us", "them", "it", "that", "this",
                           "those", "these", "one", "up", "out", "together", "over", "off", "back", "in", "to"})
_PLEASE = re.compile(r"\bplease\b", re.IGNORECASE)
_OPEN_REQUEST = re.compile(r"\b(?:who (?:can|could|will|wants to)|who's going to|(?:could|can|would) "
                           r"(?:one of you|someone|somebody|anyone)|one of you (?:should|needs to|could))\b",
                           re.IGNORECASE)  # fmt: skip
_PROPOSAL = re.compile(
    r"\b(?:we|someone|somebody|anyone|anybody|one of us)(?: [a-z]+){0,3}? (?:need to|needs to|should|have to|"
    r"has to|must|'ve got to|got to|gotta|'ll need to|will need to|ought to)\b(?! be\b)",
    re.IGNORECASE,
)
_QUESTION = re.compile(r"\b(?:should|shall|do|must) we (?:also |still |really |maybe )?(?:need to |have to )?",
                       re.IGNORECASE)  # fmt: skip
_LETS = re.compile(r"\blet's\b(?! not\b)", re.IGNORECASE)
_YOURS = re.compile(r"\b(?:that's|that is|it's|this is) (?:yours|on you|all yours)\b", re.IGNORECASE)
_INTRO = re.compile(
    r"^(?:(?:ok|okay|so|and|good|great|perfect|also|then|yes|yep|yeah|sure|right|alright|actually|now|first|oh|"
    r"well|hey|um|uh|cool|thanks|last|next|just|please|otherwise|of course|no|fine)\b[,.]?\s*)+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Mention:
    """A task said in a clause. ``kind``: commit (the speaker), request (the one addressed), open (asked of
    anyone: "who can ..."), third (``name``), proposal (nobody yet), question ("should we ...?": a task only
    once someone agrees), imperative (a bare order: to whom comes from the conversation), volunteer ("that's
    on me"), yours ("that's yours": the thing just named goes to the one addressed).
    ``verb_phrase`` starts with the verb; ``anaphoric``: its object is a pronoun ("do it", "send them")."""

    kind: str
    verb_phrase: str
    start: int
    name: str = ""
    vocative: str = ""
    hedged: bool = False
    anaphoric: bool = False
    pronoun: str = ""


def verb_lemma(word: str) -> str | None:
    """The base form of ``word`` when it is a known action verb ("grabbing" -> "grab"), else None."""
    word = word.lower()
    if word in ACTION_VERBS:
        return word
    if word.endswith("ing"):
        for base in (word[:-3], word[:-4], word[:-3] + "e"):
            if base in ACTION_VERBS:
                return base
    return None


def verb_phrase(text: str) -> str:
    """The verb phrase at the start of ``text``, up to the end of its clause, leading adverbs removed."""
    text = _LEADING_ADVERBS.sub("", text.strip())
    dates = [d.span for d in find_dates(text, None)]
    for end in _VP_END.finditer(text):
        if not any(a <= end.start() + 1 < b for a, b in dates):  # "ping Dmitri directly after this and ..."
            return text[: end.start()].strip()
    return text.strip()


def task_verb(phrase: str) -> str | None:
    """The action verb a verb phrase starts with, or None when it names no task."""
    tokens = phrase.split()
    if not tokens:
        return None
    lemma = verb_lemma(tokens[0].strip(",."))
    if lemma == "have" and not _COMPLETION.search(phrase):
        return None  # "I'll have a look" or "should have access" is no deliverable; "have it done" is
    return lemma


_TIME_NOUNS = {"morning", "afternoon", "evening", "week", "weekend", "month", "quarter", "year", "time", "sprint"}


def demonstrative_noun(phrase: str) -> str:
    """The noun of a demonstrative object ("write that article": "article"), or ""; a time ("send it this
    afternoon", "this week") is none."""
    m = re.search(r"\b(?:that|this|those|these) (\w+)", phrase, re.IGNORECASE)
    if not m:
        return ""
    noun = m.group(1).lower()
    if noun.endswith("ed") or noun in _PARTICLES or noun in {"to", "for", "on", "done", "ready", "at", "with"}:
        return ""  # "get that provisioned", "have that in": the pronoun itself
    if noun in _TIME_NOUNS:
        return ""
    return noun


def object_pronoun(phrase: str) -> str:
    """The pronoun the verb phrase's object is, if any within its first words ("send it over": "it")."""
    for token in phrase.lower().split()[1:4]:
        token = token.strip(",.?!")
        if token in PRONOUNS:
            return token
        if token not in _PARTICLES and token not in {"to", "you", "me", "us", "him", "her", "on", "with"}:
            return ""
    return ""


def new_content(phrase: str) -> int:
    """Content words of a verb phrase besides its verb, pronouns and dates. The verb is the phrase's first word,
    whether or not it is a content word: in "make an introduction" the stop word "make" is the verb and
    "introduction" is new."""
    for mention in reversed(find_dates(phrase, None)):
        phrase = phrase[: mention.start] + phrase[mention.end:]
    rest = phrase.strip().partition(" ")[2]  # after the verb
    return len([w for w in content_words(rest) if w not in PRONOUNS])


def strip_intro(clause: str) -> str:
    return _INTRO.sub("", clause.strip())


def find_mentions(clause: str, names: list[str]) -> list[Mention]:
    """Task mentions of one clause, in order. ``names``: how participants may be addressed (first names,
    last names, full names), longest first, for "Bob, please ..." and "let's have Carol ..."."""
    found: list[Mention] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, vp_start: int, **extra: object) -> None:
        if any(a <= start < b for a, b in taken):
            return
        phrase = verb_phrase(clause[vp_start:])
        verb = task_verb(phrase)
        if verb is None or (kind != "commit" and _IN_MEETING.match(phrase)):
            return
        if kind == "commit" and re.match(r"confirm (?:from|that)\b", phrase, re.IGNORECASE):
            return  # "I can confirm from the analytics" reports; it promises nothing
        if kind == "imperative" and not _looks_imperative(phrase, clause):
            return
        kind = "imperative" if kind == "please" else kind
        lemma_first = phrase.split()[0]
        if lemma_first.lower() != verb:
            phrase = verb + phrase[len(lemma_first):]  # "would you mind grabbing X" -> "grab X"
        if re.match(r"^\w+ (?:me|us)\b", phrase, re.IGNORECASE) and verb not in {"let", "send", "get"}:
            return
        pronoun = object_pronoun(phrase)
        taken.append((start, vp_start + len(phrase)))
        found.append(Mention(kind, phrase, start, anaphoric=bool(pronoun) or new_content(phrase) == 0,
                             pronoun=pronoun, **extra))  # type: ignore[arg-type]  # fmt: skip

    name_pattern = "|".join(re.escape(n) for n in names) or r"(?!x)x"
    for m in _VOLUNTEER.finditer(clause):
        if _SUBORDINATE.search(clause[: m.start()]) or _PURPOSE.search(clause[: m.start()]):
            continue
        taken.append((m.start(), m.end()))
        found.append(Mention("volunteer", "", m.start(), anaphoric=True, hedged=bool(_HEDGE.search(clause))))
    for m in re.finditer(rf"\b(?i:let's (?:have|get|ask)) (?P<name>{name_pattern}) (?:to )?", clause):
        add("third", m.start(), m.end(), name=m.group("name"))
    for m in re.finditer(rf"(?:^|[,;]\s*|\b(?:and|so|then) )(?P<name>{name_pattern}) (?:will|'ll|is going to|'s going to|"
                         r"should|needs to|has to|must) ", clause):  # fmt: skip
        add("third", m.start("name"), m.end(), name=m.group("name"))
    for m in _FIRST_PERSON.finditer(clause):
        before = clause[: m.start()]
        if _SUBORDINATE.search(before) or _PURPOSE.search(before) or re.search(r"\b[A-Z]\w+ and\s*$", before):
            continue  # "so I can take it to the staff meeting", "Marcus and I should ..."
        rest = clause[m.end():]
        if not rest.strip(" ,.") or re.match(r"\s*,", rest):  # "I can, but ..." answers without a verb
            taken.append((m.start(), m.end()))
            found.append(Mention("commit", "", m.start(), anaphoric=True, hedged=bool(_HEDGE.search(clause))))
            continue
        add("commit", m.start(), m.end(), hedged=bool(_HEDGE.search(rest)))
    for m in _OPEN_REQUEST.finditer(clause):
        add("open", m.start(), m.end())
    for m in _REQUEST.finditer(clause):
        if not _SUBORDINATE.search(clause[: m.start()]):
            add("request", m.start(), m.end(), vocative=m.group("voc") or "")
    for m in _PROPOSAL.finditer(clause):
        if not _SUBORDINATE.search(clause[: m.start()]):
            add("proposal", m.start(), m.end())
    for m in _QUESTION.finditer(clause):
        add("question", m.start(), m.end())
    for m in _LETS.finditer(clause):
        if not re.match(r"\s*say\b", clause[m.end():], re.IGNORECASE):
            add("proposal", m.start(), m.end())
    for m in _PLEASE.finditer(clause):
        add("please", m.start(), m.end())
    need = _NEED.match(strip_intro(_strip_vocative(clause, name_pattern)))
    if need and need.group("vp").lower() not in {"be", "have", "get"} and not found:
        start = clause.find(need.group(0))
        phrase = verb_phrase(clause[start:])
        taken.append((start, start + len(phrase)))
        found.append(Mention("need", phrase, start))
    yours = _YOURS.search(clause)
    if yours:
        found.append(Mention("yours", "", yours.start(), anaphoric=True))
    if not found:
        body = strip_intro(_strip_vocative(clause, name_pattern))
        if body and not re.match(r"(?:don't|do not|never|let's|let me)\b", body, re.IGNORECASE):
            add("imperative", clause.find(body), clause.find(body))
    return sorted(found, key=lambda mention: mention.start)


def _looks_imperative(phrase: str, clause: str) -> bool:
    """An order starts with the verb's base form and its object ("get both variants ...", "put it in ..."),
    and is no question; "Support backlog, Kate." is an agenda item and "Do we know ...?" a question."""
    tokens = phrase.split()
    if clause.rstrip().endswith("?") or tokens[0].lower() not in ACTION_VERBS:
        return False
    follower = tokens[1].lower().strip(",.") if len(tokens) > 1 else ""
    return follower in _OBJECT_START or follower.isdigit() or tokens[0].lower() == "try"


def _strip_vocative(clause: str, name_pattern: str) -> str:
    return re.sub(rf"^(?:\W*\w+[,.]\s+){{0,2}}?(?:{name_pattern}),\s*", "", clause.strip())


def vocative(clause: str, names: list[str]) -> str:
    """The participant the clause is addressed to ("Bob, ...", "..., Bob?", "can you, Bob, ..."), or ""."""
    if not names:
        return ""
    name = "|".join(re.escape(n) for n in names)
    for pattern in (rf"^(?:\W*(?:\w+[,.]\s+){{0,2}}?)?(?i:hey |thanks |thank you )?(?P<n>{name}),",
                    rf",\s*(?P<n>{name})\s*[?.!]?\s*$", rf"\byou,\s*(?P<n>{name}),", rf"^(?P<n>{name})\?$"):  # fmt: skip
        m = re.search(pattern, clause.strip())
        if m:
            return m.group("n")
    return ""


def is_hedged(text: str) -> bool:
    return bool(_HEDGE.search(text))
