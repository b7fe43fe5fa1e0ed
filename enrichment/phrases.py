"""Noun phrases a pronoun may stand for, and the cleaning of a task's description. Heuristics on plain
text (no parser): a phrase is a determiner and the words after it up to a clause word, or what follows
"need"/"want"; prepositions (of, for, from, on, in, with) carry it on."""

from __future__ import annotations

import re

from enrichment.dates import find_dates
from enrichment.text import content_words, lexicon

_DETERMINER = r"(?:the|a|an|our|your|their|some|each|every|these|those)"
_STOP = lexicon(
    """to by so because if which that and but we i you is are was were has have had will would can could should
    needs need also before after when while once until since it they he she isn't aren't wasn't did does do
    get gets got just really is, are, then or right now"""
)
_TIME_ADVERBIAL = re.compile(r"^(?:every|each|this|that|some|a|the) (?:time|while|bit|moment|minute|second|day)s?$",
                             re.IGNORECASE)  # fmt: skip
_CARRY = frozenset({"of", "for", "from", "on", "in", "with", "at"})
_NEED = re.compile(r"\b(?:need|needs|want|wants|require|requires|asked for|missing)\b(?!\s+to\b)\s+", re.IGNORECASE)
_FILLERS = re.compile(r"\b(?:um+|uh+|erm|er|you know|i mean|like,)\s*,?\s*", re.IGNORECASE)
_TRAILING = re.compile(
    r"(?:\s*,?\s*\b(?:if you can|if possible|if you could|ideally|please|for me|while I'm at it|while I'm in there|"
    r"first thing|as soon as possible|asap|right away|when you have time|when you get a chance|if you want|"
    r"no rush|for us|then|as well|too|again|directly|realistically|outright|real quick)\b)+\s*$",
    re.IGNORECASE,
)


def noun_phrases(sentence: str, demonstratives: bool = False) -> list[str]:
    """Candidate noun phrases of a sentence: the object of need/want first, then determiner phrases in
    order; phrases that are dates ("the tenth") are left out. With ``demonstratives``, "that renewal" and
    "this draft" count too ("that" alone, as in "said that we", is no phrase)."""
    found: list[str] = []
    need = _NEED.search(sentence)
    if need:
        phrase = _phrase_from(sentence[need.end():], require_determiner=False)
        if phrase:
            found.append(phrase)
    determiner = _DETERMINER[:-1] + "|that|this)" if demonstratives else _DETERMINER
    for m in re.finditer(rf"\b{determiner}\b", sentence, re.IGNORECASE):
        phrase = _phrase_from(sentence[m.start():], require_determiner=True)
        if phrase and phrase not in found and not _is_date(phrase) and not _TIME_ADVERBIAL.match(phrase):
            found.append(phrase)
    return found


def _phrase_from(text: str, require_determiner: bool) -> str:
    kept: list[str] = []
    for raw in text.split():
        word = raw.strip(",.?!;:")
        lowered = word.lower()
        if kept and (lowered in _STOP or (lowered.endswith("'s") and lowered[:-2] in _STOP)):
            break
        if not kept and require_determiner is False and lowered in _STOP:
            return ""
        kept.append(word)
        if raw != word and raw[-1:] in ",.?!;:":
            break
    while kept and kept[-1].lower() in _CARRY:
        kept.pop()
    phrase = " ".join(kept)
    minimum = 2 if require_determiner else 1
    return phrase if len(kept) >= minimum and content_words(phrase) else ""


def _is_date(phrase: str) -> bool:
    """"the tenth", "the 14th": a day of the month, not a thing ("the Friday before Easter" is a thing)."""
    return any(d.start == 0 and d.text.lower().startswith("the ") for d in find_dates(phrase, None))


def substitute(verb_phrase: str, pronoun: str, phrase: str) -> str:
    """``verb_phrase`` with its object ``pronoun`` replaced by ``phrase`` ("set those up" -> "set up X")."""
    tokens = verb_phrase.split()
    for i, token in enumerate(tokens[1:4], start=1):
        if token.lower().strip(",.") == pronoun:
            rest = tokens[i + 1:]
            particle = rest[:1] if rest and rest[0].lower() in {"up", "out", "over", "off", "back", "together"} else []
            return " ".join([*tokens[:i], *particle, phrase, *rest[len(particle):]])
    return verb_phrase


def clean_description(text: str) -> str:
    """A task description from a verb phrase: dates, fillers and politeness cut, first letter upper case."""
    text = _TRAILING.sub("", text)
    for mention in reversed(find_dates(text, None)):
        a, b = mention.span
        text = text[:a] + text[b:]
    text = _FILLERS.sub("", text)
    text = re.sub(r"\s+", " ", text).strip(" ,.;:-")
    previous = None
    while previous != text:
        previous, text = text, _TRAILING.sub("", text).strip(" ,.;:-")
    return text[:1].upper() + text[1:]
