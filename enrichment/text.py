"""Plain-text helpers shared by the local backend's modules: sentences, words, stop words, a light stem.

Transcripts come from speech recognition (Whisper punctuates) or from people typing; nothing here needs a
model or downloaded data."""

from __future__ import annotations

import re


def lexicon(text: str) -> frozenset[str]:
    """A set of words written as one whitespace-separated string."""
    return frozenset(text.split())


# Words that carry no topic: English function words plus the fillers and backchannels of speech.
STOPWORDS = lexicon(
    """a about above after again against all almost also although always am an and another any anybody anyone
    anything anyway are aren't around as at away back basically be because been before being below between both
    but by can can't cannot could couldn't did didn't do does doesn't doing don't done down during each either
    else enough even ever every everyone everything few for from further get gets getting go goes going gonna
    got gotta had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him
    himself his honestly how how's however i i'd i'll i'm i've if in into is isn't it it'd it'll it's its
    itself just kind kinda know let let's like likely lot lots made make many may maybe me might mine more most
    much must mustn't my myself need needs no nor not nothing now of off oh ok okay on once one ones only onto
    or other others otherwise our ours ourselves out over own perhaps please pretty probably quite rather
    really right said same say says see seem seems shall shan't she she'd she'll she's should shouldn't so
    some somebody someone something sort still such sure than thank thanks that that'll that's the their
    theirs them themselves then there there's these they they'd they'll they're they've thing things think
    this those though through thus to too totally toward um uh uhm under until up upon us very via wanna want
    was wasn't way we we'd we'll we're we've well were weren't what what's whatever when where where's whether
    which while who who's whom whose why will with within without won't would wouldn't yeah yep yes yet you
    you'd you'll you're you've your yours yourself yourselves actually anyways alright hmm mm mhm cool great
    good nice fine guess mean stuff everybody today tomorrow"""
)

_ABBREVIATIONS = ("a.m.", "p.m.", "e.g.", "i.e.", "etc.", "mr.", "mrs.", "ms.", "dr.", "vs.", "approx.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)*(?:-[a-z0-9]+)*")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after . ! ? before a capital or digit; common abbreviations kept)."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text.strip()):
        if pieces and pieces[-1].lower().rsplit(maxsplit=1)[-1].endswith(_ABBREVIATIONS) and (
            pieces[-1].lower().rsplit(maxsplit=1)[-1] in _ABBREVIATIONS
        ):
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    return [p.strip() for p in pieces if p.strip()]


def words(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes and hyphens kept inside words)."""
    return _WORD.findall(text.lower().replace("’", "'"))


def stem(word: str) -> str:
    """A light English stem, enough to join plurals, possessives and simple verb forms (tickets/ticket, ads/ad,
    provider's/provider)."""
    if word.endswith("'s") and len(word) > 3:
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """Stems of the words of ``text`` that are not stop words or bare numbers of one digit, in order."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and not (w.isdigit() and len(w) == 1)]


def dice(a: set[str], b: set[str]) -> float:
    """Dice coefficient of two sets (0 when both are empty)."""
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 0.0
