"""Speech-to-text: an engine interface, the faster-whisper engine, and the HTTP service."""
