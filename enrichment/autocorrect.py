"""Auto-correct of a dialogue's text, the ``local`` way: offline and deterministic, keeping the speaker's
words and meaning. It fixes what speech recognition gets wrong in form, never what was said:

- the names of the meeting's people and its vocabulary (words of its title and agenda) spelled as they
  are known: case ("bob" -> "Bob"), and a near miss of a name of five letters or more (one letter off:
  "Carrol" -> "Carol");
- a word said twice in a row by a stumble ("the the"), kept when it is a known emphatic pair ("very very",
  "no no");
- the pronoun "i", sentence starts in capitals, no space before punctuation, one space after it, and a
  final full stop (or question mark, when the last sentence asks) where the text ends without one.

The result is stored as a machine edit (``palaver.store.edit_overlay``): the raw text stays, a human edit
wins. A remote backend may do more (grammar) through its own endpoint; this module is what ``local`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_DOUBLED = re.compile(r"\b([A-Za-z']+)(\s+)\1\b", re.IGNORECASE)
_EMPHATIC = {"very", "no", "bye", "so", "really", "many", "yeah", "yes", "ha", "that", "had", "is"}
_QUESTION_START = re.compile(
    r"^(who|what|when|where|why|how|which|can|could|would|will|shall|should|do|does|did|is|are|was|were|have|has)\b",
    re.IGNORECASE,
)
_STOP = {"the", "and", "for", "with", "from", "into", "about", "this", "that", "review", "plan", "meeting"}


# Names that are also everyday words: left as said, since "I will" is not about Will.
_WORDS_TOO = {
    "will", "mark", "bill", "rose", "jack", "grace", "hope", "joy", "pat", "sue", "max", "ray", "dawn", "faith",
    "frank", "art", "amber", "penny", "ruby", "summer", "june", "april", "may", "august", "rich", "chase",
    "hunter", "carol", "sky", "rob", "don", "gene", "iris", "lily", "holly", "violet", "ivy", "page", "paige",
    "drew", "cliff", "dean", "miles", "price", "sage", "storm", "wade", "young", "victor", "norm", "bob",
}


def known_terms(names: Iterable[str], title: str = "", agenda: Iterable[str] = ()) -> list[str]:
    """The spellings auto-correct enforces: people's names (a lowercase handle such as ``alice`` is written
    ``Alice``; handles with digits or signs are not names to spell), and the title's and agenda's words
    that are spelled in a distinctive way (a capital inside or at the start), not common words."""
    terms = [n if any(c.isupper() for c in n) else n.capitalize() for n in names if n and n.isalpha()]
    for text in (title, *agenda):
        for word in _WORD.findall(text):
            if len(word) >= 3 and word.lower() not in _STOP and (word[0].isupper() or any(c.isupper() for c in word[1:])):
                terms.append(word)
    return list(dict.fromkeys(terms))


def autocorrect(text: str, terms: Iterable[str] = ()) -> str:
    """``text`` with its form corrected (see the module). Empty text stays empty."""
    out = text.strip()
    if not out:
        return out
    out = re.sub(r"\s+", " ", out)
    out = _fix_terms(out, list(terms))
    out = _DOUBLED.sub(lambda m: m.group(0) if m.group(1).lower() in _EMPHATIC else m.group(1), out)
    out = re.sub(r"\bi\b", "I", out)
    out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    out = re.sub(r"([,;:!?])(?=[A-Za-z])", r"\1 ", out)
    out = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), out)
    if out[-1] not in ".!?…":
        last = re.split(r"[.!?]\s+", out)[-1]
        out += "?" if _QUESTION_START.match(last) else "."
    return out


def _fix_terms(text: str, terms: list[str]) -> str:
    """Known spellings: an exact match in another case (not of a name that is also a word), and a near miss
    of a long term where recognition wrote a proper noun (a capitalized word inside a sentence)."""
    by_lower = {t.lower(): t for t in terms if t.lower() not in _WORDS_TOO}
    long_terms = [t for t in terms if len(t) >= 5 and t.isalpha()]

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        known = by_lower.get(word.lower())
        if known is not None:
            return known
        inside = match.start() > 0 and not re.search(r"[.!?]\s*$", text[: match.start()])
        if len(word) >= 5 and word[0].isupper() and inside:
            for term in long_terms:
                if _one_letter_off(word.lower(), term.lower()):
                    return term
        return word

    return _WORD.sub(fix, text)


def _one_letter_off(a: str, b: str) -> bool:
    """One substitution, insertion or deletion apart (not equal), same first letter."""
    if a == b or a[0] != b[0] or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))
