"""Enrichment of a meeting's transcript: summary, action items, keywords, mood, agenda and metrics.

``enrichment.backend`` is the interface (``EnrichmentBackend``: a ``MeetingTranscript`` in, an ``Enrichment``
out) and the registry of backends; ``enrichment.local`` the offline, deterministic default. One module per
concern: tasks (with task_cues, phrases, dates), summary, keywords, mood, agenda, metrics."""
