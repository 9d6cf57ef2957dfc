"""Secretary: a self-hosted speech and avatar stack."""

__version__ = "0.1.0"
