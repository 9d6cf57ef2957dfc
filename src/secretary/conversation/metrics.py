"""Prometheus metrics of conversation turns: a histogram per stage, and counts of the work
done (sentences synthesized, frames rendered), so a cancelled turn can be seen to stop."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

STAGES = (
    "decode",  # the upload to samples
    "transcribe",  # the final transcript
    "brain_first_token",  # the chat model's first token, from the transcript
    "brain",  # the whole reply text
    "speech_first_chunk",  # per sentence: its first audio, from the sentence's start
    "speech_sentence",  # per sentence: all its audio
    "first_audio",  # end of upload to the first reply audio sent
    "first_frame",  # end of upload to the first avatar frame sent
    "turn",  # end of upload to the turn's end
)


class TurnMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.stage_seconds = Histogram(
            "secretary_turn_stage_seconds", "Time per stage of a conversation turn.",
            ["stage"], registry=self.registry,
            buckets=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
        )
        self.turns = Counter(
            "secretary_turns_total", "Conversation turns by how they ended.", ["outcome"],
            registry=self.registry,
        )
        self.sentences = Counter(
            "secretary_turn_sentences_total",
            "Reply sentences: synthesized, or dropped because the turn was cancelled.",
            ["state"], registry=self.registry,
        )
        self.frames = Counter(
            "secretary_turn_frames_total", "Avatar frames rendered for turns.",
            registry=self.registry,
        )

    def observe(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)
