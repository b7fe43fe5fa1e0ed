"""Summary, keywords, mood and agenda of the local backend, on small meetings made for each."""

from __future__ import annotations

from enrichment.agenda import agenda_topics, boundaries
from enrichment.keywords import keywords
from enrichment.model import ActionItem, AgendaTopic
from enrichment.mood import meeting_mood
from enrichment.summary import MIN_WORDS, WORD_SHARE, _sentences, clean, summarize, textrank, worth
from enrichment.text import split_sentences
from enrichment.text import words as word_list
from tests.unit.enrichment_helpers import meeting

DATABASE = [
    "Ann: The database migration failed twice last night because the replica lagged.",
    "Bob: The replica lag came from the nightly backup hitting the same disk as the database.",
    "Ann: So we move the backup to its own disk and rerun the database migration.",
    "Bob: Agreed, the migration reruns once the backup has its own disk.",
    "Ann: And we watch replica lag during the migration.",
]
HIRING = [
    "Bob: Next, hiring. We have two open roles for the mobile team and three candidates in the pipeline.",
    "Ann: The mobile candidates did well in the interviews, especially on Swift and offline sync.",
    "Bob: The interviews for the mobile roles end on Friday and offers go out after that.",
    "Ann: Mobile hiring is the priority this quarter, so the candidates get answers fast.",
    "Bob: Good, that covers hiring for the mobile team.",
]


def test_sentences_split_at_ends_but_not_inside_abbreviations() -> None:
    assert split_sentences("Move it to 3 a.m. while you're at it. Then ship. Dr. Who? Yes! Two forms. I'll go") == [
        "Move it to 3 a.m. while you're at it.", "Then ship.", "Dr. Who?", "Yes!", "Two forms.", "I'll go"]


def test_textrank_ranks_the_central_sentence_first() -> None:
    ranks = textrank(["The cache speeds up the product page.", "The product page cache needs a flag.",
                      "The cache and the product page share a flag.", "Lunch was good."])  # fmt: skip
    assert ranks.index(max(ranks)) in (1, 2) and ranks[3] == min(ranks) and abs(sum(ranks) - 1) < 1e-9


def test_the_summary_has_a_brief_and_one_section_per_topic_then_the_items() -> None:
    transcript = meeting(*DATABASE, *HIRING)
    topics = agenda_topics(transcript.dialogues, ["Database migration", "Mobile hiring"])
    item = ActionItem(description="Move the backup to its own disk", assignee="Ann")
    summary = summarize(transcript.dialogues, topics, [item])
    brief = summary.brief.splitlines()
    assert 1 <= len(brief) <= 5 and all(line.startswith("- ") for line in brief)
    assert [line for line in summary.detailed.splitlines() if line.startswith("### ")][-1] == "### Action items"
    assert summary.detailed.count("### ") >= len(topics) + 1
    assert "- [ ] Move the backup to its own disk (Ann)" in summary.detailed
    assert "database" in summary.detailed.lower() and "mobile" in summary.detailed.lower()


def test_a_long_meeting_is_summarized_whole_every_subject_has_its_section() -> None:
    subjects = ["database migration replica backup disk", "mobile hiring candidates interviews offers",
                "pricing page discount annual plan", "office move desks parking elevator",
                "security audit passwords tokens rotation", "conference venue speakers catering budget"]  # fmt: skip
    turns = []
    for _ in range(4):
        for words in subjects:
            first, *rest = words.split()
            turns += [f"Ann: Next, the {first}. " + " ".join(f"The {w} matters for {first}." for w in rest),
                      f"Bob: About the {first}, the {rest[0]} and the {rest[1]} are on track.",
                      f"Ann: Good, {first} {rest[2]} done for now.", f"Bob: {first.title()} {rest[3]} noted."]
    transcript = meeting(*turns)
    topics = agenda_topics(transcript.dialogues, [words.split()[0] for words in subjects])
    summary = summarize(transcript.dialogues, topics, [])
    covered = {d for t in topics for d in t.dialogue_ids}
    assert covered == {d.dialogue_id for d in transcript.dialogues}  # every turn is in a topic
    sections = [line for line in summary.detailed.splitlines() if line.startswith("### ")]
    assert len(topics) > 6 and len(sections) >= 6  # each subject has its section; a verbatim repeat adds none
    assert all(any(h.startswith(f"### {t.title} (") for h in sections) for t in topics[:6])
    assert summary == summarize(transcript.dialogues, topics, [])  # deterministic


def test_found_topics_of_a_short_meeting_share_one_section() -> None:
    """Without an agenda, topics of a few turns get no headings of their own: they would cost more than they tell."""
    transcript = meeting(*DATABASE, *HIRING)
    topics = agenda_topics(transcript.dialogues)
    assert len(topics) == 2 and all(t.agenda_item is None for t in topics)
    summary = summarize(transcript.dialogues, topics, [])
    assert [line for line in summary.detailed.splitlines() if line.startswith("### ")] == ["### Discussion"]


def test_clean_drops_fillers_but_keeps_words() -> None:
    assert clean("So, um, yeah, I'll let you know by Friday.") == "I'll let you know by Friday."


def test_keywords_are_the_repeated_phrases_not_names_or_small_talk() -> None:
    found = keywords(meeting(*DATABASE).dialogues, names=["Ann", "Bob"])
    assert "database migration" in found and "replica" in " ".join(found)
    assert not {"ann", "bob", "yeah", "good"} & {k.lower() for k in found}


def test_mood_per_speaker_and_overall() -> None:
    mood = meeting_mood(meeting("Ann: This is great, I love the new design, wonderful work!",
                                "Bob: This is terrible. The release failed again and customers are angry.").dialogues)
    assert mood.speakers["Ann"].label == "positive" and mood.speakers["Bob"].label == "negative"
    assert -1 <= mood.overall.score <= 1


def test_topics_split_where_the_vocabulary_changes_and_match_the_agenda() -> None:
    transcript = meeting(*DATABASE, *HIRING, agenda=("Database migration", "Mobile hiring"))
    assert boundaries(transcript.dialogues) == [0, 5]
    first, second = agenda_topics(transcript.dialogues, transcript.agenda)
    assert (first.title, first.agenda_item, second.title) == ("Database migration", "Database migration", "Mobile hiring")
    assert first.start_ms == 0 and first.end_ms <= second.start_ms and second.end_ms == transcript.dialogues[-1].end_ms
    assert isinstance(first, AgendaTopic) and first.dialogue_ids == ("d0", "d1", "d2", "d3", "d4")


def test_clean_compresses_hedges_and_tags() -> None:
    assert clean("I think we should just roll it back, right?") == "We should roll it back?"
    assert clean("The goal I'd like us to agree on is the beta.") == "The goal I'd like us to agree on is the beta."


def test_substance_outweighs_small_talk_and_a_decision_or_figure_counts() -> None:
    plain = worth("The team looked at the dashboard together.", 1.0)
    assert worth("The error rate jumped to forty percent after the release.", 1.0) > plain
    assert worth("We decided to postpone the launch to May.", 1.0) > plain
    assert worth("Sounds good, thanks.", 1.0) < plain and worth("Which dashboard do we use?", 1.0) < plain


def test_the_topic_sections_keep_within_their_share_of_the_meetings_words() -> None:
    transcript = meeting(*DATABASE, *HIRING, *DATABASE[:2], *HIRING[:2])
    summary = summarize(transcript.dialogues, agenda_topics(transcript.dialogues), [])
    total = sum(len(word_list(d.text)) for d in transcript.dialogues)
    assert len(word_list(summary.detailed)) <= max(MIN_WORDS, WORD_SHARE * total)
    lines = [line for line in summary.detailed.splitlines() if line]
    assert len(set(lines)) == len(lines)  # the repeated sentences are kept once


def test_an_answer_that_leans_on_a_question_carries_it() -> None:
    transcript = meeting("Ann: Are we still doing the database index cleanup this sprint?",
                         "Bob: No, let's move it to the next sprint, the release matters more.",
                         "Ann: The release goes out on the twelfth with the new billing export.")  # fmt: skip
    summary = summarize(transcript.dialogues, [], [])
    assert ("- **Ann:** Are we still doing the database index cleanup this sprint? **Bob:** No, let's move it to the next "
            "sprint, the release matters more.") in summary.detailed.splitlines()


def test_a_trailing_fragment_joins_its_sentence_and_a_short_clause_does_not() -> None:
    sentences = _sentences(meeting("Ann: What drove that?",
                                   "Bob: The answers mention the faster support replies. The chat widget especially.",
                                   "Ann: The office move is three weeks out. Let's go through it.").dialogues)  # fmt: skip
    assert [s.text for s in sentences] == ["What drove that?",
                                           "The answers mention the faster support replies. The chat widget especially.",
                                           "The office move is three weeks out.", "Let's go through it."]  # fmt: skip


def test_a_decision_after_a_short_reply_carries_the_question_both_answered() -> None:
    sentences = _sentences(meeting("Sofia: One question: are we still doing the database index cleanup this sprint?",
                                   "Daniel: I'd push it. We're tight.",
                                   "Aisha: Agreed, let's move it to next sprint.").dialogues)  # fmt: skip
    decision = next(s for s in sentences if s.text.startswith("Agreed"))
    assert decision.asked == ("Sofia", "One question: are we still doing the database index cleanup this sprint?")


def test_a_long_turn_between_breaks_the_chain_to_the_question() -> None:
    sentences = _sentences(meeting("Amara: Does the reports feature still get complaints?",
                                   "Carlos: It does. Reports is the lowest-rated area. People say exports are slow and "
                                   "the filters are confusing.",
                                   "Yuki: That matches what I hear on sales calls.").dialogues)  # fmt: skip
    assert next(s for s in sentences if s.text.startswith("It does")).asked is not None
    assert next(s for s in sentences if s.text.startswith("That matches")).asked is None


def test_a_question_followed_by_its_context_is_carried_by_the_answer_and_the_sentence_after_a_short_one() -> None:
    sentences = _sentences(meeting("Zara: Should we also cut the paid ads for the webinar? I set up a budget for them.",
                                   "Olivia: Yes, pause those. Actually, don't pause, cancel them outright.").dialogues)  # fmt: skip
    question = ("Zara", "Should we also cut the paid ads for the webinar?")
    assert [s.asked for s in sentences if s.speaker == "Olivia"] == [question, question]


def test_a_request_is_worth_less_than_the_fact_it_is_about() -> None:
    fact = worth("The survey went out to the whole team last week.", 1.0)
    assert worth("Could one of you send the survey to the whole team?", 1.0) < fact
    assert worth("Can you send the survey to the whole team this week?", 1.0) < fact


def test_clean_drops_a_concession_without_content_before_but_and_keeps_one_with_content() -> None:
    assert clean("I won't go through all of it, but the headline is that we're prioritizing reliability.") == (
        "The headline is that we're prioritizing reliability.")
    assert clean("It's about eighty percent done, but I'm blocked on credentials.") == (
        "It's about eighty percent done, but I'm blocked on credentials.")


def test_a_sentence_that_says_it_is_the_headline_counts_more() -> None:
    assert worth("The headline is that we're prioritizing reliability and the reports rewrite.", 1.0) > worth(
        "We're prioritizing reliability and the reports rewrite.", 1.0)
