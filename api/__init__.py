"""The read API: REST for stored dialogues, a WebSocket for live dialogue events."""
