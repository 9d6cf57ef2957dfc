"""The avatar: a portrait that shows expressions and speaks an audio clip (port 8081)."""
