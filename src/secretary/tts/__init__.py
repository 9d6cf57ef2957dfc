"""Text-to-speech: an engine interface, the Piper, eSpeak NG and XTTS engines, the routing
table that picks one per language and voice, and the HTTP service."""
