"""Enrichment of a meeting's transcript: summary, action items, keywords, mood, agenda and metrics.

``enrichment.backend`` is the interface (``EnrichmentBackend``: a ``MeetingTranscript`` in, an ``Enrichment``
out, the detailed summary streamed to an optional callback) and the registry of backends; ``enrichment.local``
the offline, deterministic default, one module per concern: tasks (with task_cues, phrases, dates), summary,
keywords, mood, agenda, metrics. The remote backends: ``remote`` (what is asked of a language model, map-reduce
over long meetings) with ``prompts`` and ``answers`` (pure), ``chat_http`` and ``http_calls`` (requests, retries, server-sent
events), ``openai_backend`` and ``watsonx_backend``; ``fallback`` hands a failed meeting to ``local``."""
