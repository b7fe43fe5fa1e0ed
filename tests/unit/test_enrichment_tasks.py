"""Action items from small conversations: who, what, by when; merged, cancelled, never guessed."""

from __future__ import annotations

from datetime import date

from enrichment.model import ActionItem
from enrichment.task_cues import demonstrative_noun, new_content
from enrichment.tasks import extract_action_items, priority_of
from tests.unit.enrichment_helpers import WEDNESDAY, meeting

PEOPLE = ("Ann Lee", "Bob Stone", "Carol White")


def items(*turns: str, people: tuple[str, ...] = PEOPLE) -> list[ActionItem]:
    return extract_action_items(meeting(*turns, participants=people))


def test_a_commitment_belongs_to_its_speaker_with_its_due_date() -> None:
    [item] = items("Ann Lee: I'll send the budget spreadsheet to finance by Friday.")
    assert (item.description, item.assignee, item.due_date, item.status) == (
        "Send the budget spreadsheet to finance", "Ann Lee", date(2026, 3, 6), "pending")
    assert item.dialogue_ids == ("d0",) and item.priority == "normal" and item.start_date is None


def test_a_request_belongs_to_the_one_addressed_by_first_name() -> None:
    [first, second] = items("Ann Lee: Can you, Bob, update the vendor list before next Tuesday?",
                            "Carol White: Bob, please book the large meeting room for the offsite tomorrow.")
    assert (first.assignee, first.due_date) == ("Bob Stone", date(2026, 3, 10))
    assert (second.description, second.assignee, second.due_date) == (
        "Book the large meeting room for the offsite", "Bob Stone", date(2026, 3, 5))


def test_lets_have_someone_assigns_them() -> None:
    [item] = items("Ann Lee: Let's have Carol draft the press release in two weeks.")
    assert (item.assignee, item.due_date) == ("Carol White", date(2026, 3, 18))


def test_an_open_request_goes_to_whoever_takes_it_and_a_pronoun_finds_the_task() -> None:
    [item] = items("Ann Lee: We need test accounts for each plan tier. Who can set those up?",
                   "Bob Stone: That's on me. I'll create them tomorrow.")
    assert (item.description, item.assignee, item.due_date) == (
        "Set up test accounts for each plan tier", "Bob Stone", date(2026, 3, 5))


def test_nobody_named_means_no_assignee() -> None:
    [item] = items("Ann Lee: Somebody needs to renew the SSL certificate before it expires.",
                   "Carol White: Yeah, that would be bad.")
    assert item.assignee == "" and item.description == "Renew the SSL certificate"


def test_a_hedged_offer_assigns_nobody() -> None:
    [item] = items("Ann Lee: Could one of you put out a quick survey about parking?",
                   "Bob Stone: I can do it, unless Carol wants to.", "Carol White: Either way. Let's decide later.")
    assert item.assignee == ""


def test_in_a_two_person_meeting_you_is_the_other_person() -> None:
    [item] = items("Ann Lee: Could you write up the migration plan? By Tuesday, ideally.", "Bob Stone: Yeah, I can do that.",
                   people=("Ann Lee", "Bob Stone"))
    assert (item.assignee, item.due_date) == ("Bob Stone", date(2026, 3, 10))


def test_a_date_said_next_to_a_request_dates_it() -> None:
    [item] = items("Ann Lee: Carol, could you check the contrast with the design team? Ideally by Friday.")
    assert (item.assignee, item.due_date) == ("Carol White", date(2026, 3, 6))


def test_an_accepted_question_becomes_a_task_of_the_one_who_takes_it() -> None:
    [item] = items("Bob Stone: Should we also load test the reporting job after the fix?",
                   "Carol White: Yes, good idea. I'll run a load test against staging before it ships.")
    assert item.assignee == "Carol White" and "load test the reporting job" in item.description.lower()


def test_an_unanswered_question_is_no_task() -> None:
    assert items("Bob Stone: Should we also migrate the old reports?", "Carol White: Hm, not sure yet.") == []


def test_a_restatement_merges_into_one_item_and_its_later_date_wins() -> None:
    [item] = items("Ann Lee: Bob, can you send the signed contract to legal?",
                   "Bob Stone: Sure, I'll have it over to them by Thursday.")
    assert (item.assignee, item.due_date, item.dialogue_ids) == ("Bob Stone", date(2026, 3, 5), ("d0", "d1"))


def test_a_task_the_meeting_cancels_is_dropped() -> None:
    assert items("Bob Stone: I'll set up the registration page for the webinar by Friday.",
                 "Ann Lee: The numbers are bad. Let's not do the webinar after all. Bob, forget the registration page.") == []
    assert items("Carol White: I'll order new chairs for the lobby.", "Ann Lee: Actually, let's not do that after all.") == []


def test_talk_that_sounds_like_a_task_is_not_one() -> None:
    assert items("Ann Lee: I'll be honest, the numbers surprised me.", "Bob Stone: I will say the chat widget helped.",
                 "Carol White: Can you believe one customer rebuilds every report in Excel?",
                 "Ann Lee: Bob, can you walk us through the timeline?", "Bob Stone: I can confirm from the logs, it was the cache.",
                 "Carol White: If I get time I'll look at it, so I can take it to the staff meeting.") == []  # fmt: skip


def test_priority_from_wording() -> None:
    assert priority_of("This is urgent. Can you fix it asap?") == "high"
    assert priority_of("No rush, when you have time.") == "low"
    assert priority_of("It's not urgent.") == "low"
    assert priority_of("Can you fix it?") == "normal"
    [item] = items("Ann Lee: This is urgent. Bob, can you ship a hotfix for the login page?")
    assert item.priority == "high"


def test_two_tasks_joined_by_and_are_two_items() -> None:
    alert, cap = items("Carol White: I'll drop the connection alert to seventy percent and add a per-client cap.")
    assert alert.description == "Drop the connection alert to seventy percent" and cap.description == "Add a per-client cap"


def test_no_meeting_date_leaves_dates_unresolved_and_the_result_is_deterministic() -> None:
    transcript = meeting("Ann Lee: I'll send the report by Friday.", participants=PEOPLE, day=None)
    assert extract_action_items(transcript)[0].due_date is None
    assert extract_action_items(transcript) == extract_action_items(transcript)


def test_a_date_in_reported_speech_is_not_the_tasks() -> None:
    [item] = items("Ann Lee: Bob, give the candidate a heads-up on timing, they said they need to decide by Friday.")
    assert (item.assignee, item.due_date) == ("Bob Stone", None)


def test_two_days_named_together_are_slots_and_keep_the_deadline_asked_for() -> None:
    [item] = items("Ann Lee: Bob, can you do the reference calls this week?",
                   "Bob Stone: Sure, I'll set them up for Thursday and Friday.")  # fmt: skip
    assert (item.assignee, item.due_date) == ("Bob Stone", date(2026, 3, 6))  # this week's Friday, not Friday's slot


def test_a_deadline_in_a_wish_after_the_request_dates_it() -> None:
    [item] = items("Ann Lee: Bob, would you get a quote from the agency? I'd like to see it before the end of next week.",
                   "Bob Stone: Yeah, I'll email them today.")  # fmt: skip
    assert (item.assignee, item.due_date) == ("Bob Stone", date(2026, 3, 13))


def test_a_request_taken_with_it_and_a_time_of_day_goes_to_its_taker_with_that_day() -> None:
    """"This afternoon" is a time, not the thing "it" stands for: the pronoun still finds the request."""
    [item] = items("Ann Lee: Budget requests are due in October, on the new template.",
                   "Bob Stone: Can you send the template around again? I can't find it.",
                   "Ann Lee: I'll send it to everyone this afternoon.")
    assert (item.description, item.assignee, item.due_date) == ("Send the template around", "Ann Lee", date(2026, 3, 4))


def test_a_time_is_no_demonstrative_object() -> None:
    assert demonstrative_noun("write that article") == "article"
    assert demonstrative_noun("send it to everyone this afternoon") == ""
    assert demonstrative_noun("finish it this week") == ""


def test_a_verb_that_is_a_stop_word_still_leaves_its_object_as_new_content() -> None:
    assert new_content("make an introduction next week") == 1 and new_content("do it") == 0
    [item] = items("Ann Lee: I can make an introduction next week if that helps.", "Bob Stone: That would help a lot.")
    assert (item.description, item.assignee, item.due_date) == ("Make an introduction", "Ann Lee", date(2026, 3, 13))


def test_it_stands_for_the_whole_thing_named_not_the_part_after_its_preposition() -> None:
    [item] = items("Ann Lee: The export fails for long names. That's a validation bug on our side.",
                   "Bob Stone: I can fix it tomorrow.")  # fmt: skip
    assert (item.description, item.assignee, item.due_date) == (
        "Fix a validation bug on our side", "Bob Stone", date(2026, 3, 5))


def test_it_stands_for_the_thing_named_earlier_in_its_sentence_not_an_unrelated_earlier_task() -> None:
    first, second = items("Ann Lee: Bob, please send Carol the contact details for the hospital deal today.",
                          "Bob Stone: Sure, right after this call.",
                          "Carol White: Our biggest customer renews on the 30th and wants a discount.",
                          "Ann Lee: Bob, you own that renewal, so let's get it signed before the 30th.")  # fmt: skip
    assert (first.description, first.due_date) == ("Send Carol the contact details for the hospital deal", WEDNESDAY)
    assert (second.description, second.due_date) == ("Get that renewal signed", date(2026, 3, 30))
