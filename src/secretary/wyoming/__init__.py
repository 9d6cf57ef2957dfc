"""Home Assistant's Wyoming protocol: speech-to-text and text-to-speech over TCP."""
