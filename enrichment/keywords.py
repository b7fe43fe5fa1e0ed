"""Keywords of a meeting: RAKE-style candidate phrases (runs of content words between stop words and
punctuation, up to three words), scored by how often they are said, how many turns say them and their
length. Participants' names, numbers and time words are not keywords."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from enrichment.model import Dialogue
from enrichment.text import STOPWORDS, lexicon, stem

# Talk that carries no topic in a meeting, beyond the function words of STOPWORDS.
_GENERIC = lexicon(
    """ask asked bit call come day days done everyone feel give glad guys happy hear help hope idea job keep
    last look meeting minute minutes month months morning next number numbers part point put question start
    talk tell thing time times today told try update use week weeks work year years afternoon lunch half
    quick quickly later early first second third agreed agree sense fine doable true means lead week's
    sounds works moving move thinking wanted wants going getting stuff anything nothing plan great
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july august
    september october november december one two three four five six seven eight nine ten eleven twelve
    hundred thousand twenty thirty forty fifty sixty seventy eighty ninety"""
)
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9'-]*[A-Za-z0-9]|[A-Za-z]|[.,;:!?()\"]|\d[\d.,:%]*")


def _phrases(text: str, skip: set[str]) -> Iterable[list[str]]:
    run: list[str] = []
    for token in _TOKEN.findall(text):
        low = token.lower().strip("'")
        if (low in STOPWORDS or low in _GENERIC or low in skip or not low[0].isalpha() or len(low) < 3
                or (low.endswith("'s") and low[:-2] in STOPWORDS)):  # fmt: skip
            if run:
                yield run
            run = []
            continue
        if run and _verb_like(low):
            yield run  # "the audit came back": the phrase is "audit", not "audit came"
            run = []
            continue
        run.append(token)
        if len(run) == 3:
            yield run
            run = []
    if run:
        yield run


_VERBISH = lexicon("come came fail pull mention rate ask say said go went get got seem seems hit touch drove"
                   " make made take took")


def _verb_like(word: str) -> bool:
    """A word that ends a noun phrase: a verb form or an adverb ("came", "fixes", "especially")."""
    from enrichment.task_cues import ACTION_VERBS

    bases = {word, word[:-1], word[:-2], word[:-3], word[:-2] + "e" if word.endswith("ed") else word}
    if word.endswith("es"):
        bases.add(word[:-2])
    return word.endswith("ly") or bool(bases & _VERBISH) or (word.endswith(("s", "ed")) and bool(bases & ACTION_VERBS))


def keywords(dialogues: Sequence[Dialogue], names: Iterable[str] = (), limit: int = 10) -> list[str]:
    """The meeting's ``limit`` best keywords and key phrases, best first."""
    skip = {part.lower() for name in names for part in name.split()}
    phrase_count: Counter[tuple[str, ...]] = Counter()
    phrase_turns: dict[tuple[str, ...], set[int]] = defaultdict(set)
    surface: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    word_count: Counter[str] = Counter()
    for turn, d in enumerate(dialogues):
        for run in _phrases(d.text, skip):
            key = tuple(stem(t.lower()) for t in run)
            phrase_count[key] += 1
            phrase_turns[key].add(turn)
            surface[key][" ".join(run)] += 1
            word_count.update(key)
    scored = []
    for key, n in phrase_count.items():
        word_score = sum(word_count[w] for w in key) / len(key)
        score = (n + word_score) * (1 + 0.5 * (len(key) - 1)) * (1 + 0.3 * (len(phrase_turns[key]) - 1))
        if len(key) == 1 and word_count[key[0]] < 2:
            continue  # a word said once is not what the meeting was about
        scored.append((score, key))
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen: list[tuple[str, ...]] = []
    for _, key in scored:
        if any(set(key) <= set(c) or set(c) <= set(key) for c in chosen):
            continue
        chosen.append(key)
        if len(chosen) == limit:
            break
    return [_display(surface[key]) for key in chosen]


def _display(forms: Counter[str]) -> str:
    form = forms.most_common(1)[0][0]
    return form if any(c.isupper() for c in form[1:]) or form.isupper() else form.lower()
