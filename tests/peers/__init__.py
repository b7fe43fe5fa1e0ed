"""Local stand-ins for cloud speech services: WebSocket servers that speak each service's protocol and
transcribe for real with the bundled faster-whisper tiny.en model. Test-only; nothing here talks to a
network beyond 127.0.0.1."""
