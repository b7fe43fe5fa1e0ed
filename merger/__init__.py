"""Merger: orders a meeting's utterances on media time into dialogues (one per speaker turn)."""
