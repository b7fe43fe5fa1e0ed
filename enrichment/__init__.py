"""Enrichment consumers (summaries, action items, keywords, mood, agenda, metrics): not built yet."""
