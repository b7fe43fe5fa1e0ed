"""Where a trimmed-window Whisper decode stops belonging to the audio: pure rules on tokens, words and times.

tiny.en learned 30 s windows; on a window trimmed to the speech it goes on past the speech's end in three
ways, each with its rule here:

- it starts the clip's text over (``cut_restart``, on tokens);
- it loops inside the text, one span said again and again ("it was the age of foolishness. It was the age
  of foolishness. It was the age of foolishness ...", ``loop_free``, on words);
- it adds words that the alignment places in the silence after the clip (``words_in_speech``, on times).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

# A back-to-back repeat counts as a decoder loop once its copies hold this many words: people repeat short
# phrases ("of course, of course", "thank you, thank you, thank you", "no, no, no") but hardly ever
# say a phrase of five words or more twice in a row, nor one word six times.
MIN_LOOP_WORDS = 5


def cut_restart(tokens: list[int], probe: int = 5) -> list[int]:
    """Cut where the text starts over inside one segment (the trimmed-window failure that timestamps do
    not always mark): the first later occurrence of the opening ``probe`` tokens, also at a period shorter
    than the probe ("Great news. Great news. Great news."). A text that repeats to its end is also found
    past its first token, whose spelling often differs on a restart ("great news. Great news. Great"). A
    short text is probed with half its length (at least 2 tokens); a one-token echo ("no, no") is left
    alone."""
    probe = min(probe, (len(tokens) - 1) // 2)
    if probe < 2:
        return tokens
    head = tokens[:probe]
    for j in range(1, len(tokens) - probe + 1):
        if tokens[j : j + probe] == head:
            return tokens[:j]
    # Skipping the first token, only a text that repeats to its end counts: a phrase said twice in a
    # sentence ("Yes, of course, of course.") is not a restart.
    head = tokens[1 : 1 + probe]
    for j in range(2, len(tokens) - probe + 1):
        if tokens[j : j + probe] == head and tokens[j:] == tokens[1 : 1 + len(tokens) - j]:
            return tokens[: j - 1]
    return tokens


def word_key(word: str) -> str:
    """A word as loops compare it: lower case, letters and digits only ("Foolishness." -> "foolishness");
    empty for punctuation."""
    return "".join(c for c in word.lower() if unicodedata.category(c)[0] in "LN")


def loop_free(words: Sequence[str], min_loop_words: int = MIN_LOOP_WORDS) -> list[int]:
    """The indices of ``words`` to keep once decoder loops are cut out.

    Rule: words compare by ``word_key`` (case and punctuation ignored; punctuation-only words are skipped
    in the comparison). Scanning from the start, at each word the shortest span of ``n`` words that is
    followed at once by a copy of itself is looked for; the copies are the whole copies that follow back to
    back, and an unfinished last copy only where it ends the text (elsewhere it may be the start of the
    next sentence: "it was the age of foolishness, it was the age of foolishness, it was the epoch of
    belief"). When the copies hold at least ``n`` and at least ``min_loop_words`` words, they are a loop:
    the first occurrence stays, the copies (with the punctuation among and after them) go, and the scan
    goes on after them. So "It was the age of foolishness. It was the age of foolishness. It was the" keeps
    one sentence, "no no no no no no"
    keeps one "no", while "of course, of course" (2 repeated words), "thank you, thank you, thank you" (4)
    and "no, no, no" (2) stay whole."""
    keyed = [(i, key) for i, word in enumerate(words) if (key := word_key(word))]
    keys = [key for _, key in keyed]
    dropped: list[range] = []
    j = 0
    while j < len(keys):
        run_end = None
        for n in range(1, (len(keys) - j) // 2 + 1):
            if keys[j + n] != keys[j]:
                continue
            end = j + n
            while end < len(keys) and keys[end] == keys[end - n]:
                end += 1
            if end < len(keys):  # an unfinished copy before other words may be the next sentence's start
                end = j + n + (end - j - n) // n * n
            repeated = end - (j + n)
            if repeated >= n and repeated >= min_loop_words:
                run_end = end
                start_word = keyed[j + n][0]
                end_word = keyed[end][0] if end < len(keyed) else len(words)
                dropped.append(range(start_word, end_word))
                break
        j = run_end if run_end is not None else j + 1
    gone = {i for span in dropped for i in span}
    return [i for i in range(len(words)) if i not in gone]


def words_in_speech(starts: Sequence[float], speech_end_s: float) -> int:
    """How many leading words belong to the clip: those before the first word that starts at or after
    ``speech_end_s`` (the clip's end). Words after it, even ones placed earlier, are dropped with it: the
    alignment is monotonic, so they are the decoder's run-on."""
    for count, start in enumerate(starts):
        if start >= speech_end_s:
            return count
    return len(starts)
