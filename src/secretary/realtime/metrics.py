"""Prometheus metrics of realtime sessions, served on the realtime app's /metrics with the
conversation stages' own (``secretary_turn_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# From the VAD's end-of-turn decision (the user's speech ended silence_duration_ms before).
RESPONSE_STAGES = ("transcribed", "first_audio")


class RealtimeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.response_seconds = Histogram(
            "secretary_realtime_response_seconds",
            "From the end of the user's turn (the VAD's decision) to a stage of the "
            "response: the final transcript, the first reply audio sent.",
            ["stage"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5),
        )
        self.end_of_turn = Counter(
            "secretary_realtime_end_of_turn_total",
            "The end-of-turn model's verdicts at the user's pauses (semantic_vad): complete "
            "(the turn ends after a short silence) or unfinished (it waits longer); and at "
            "an unfinished pause that lasts, whether its transcript reads as a finished "
            "sentence (words finished: the turn ends then) or not (words unfinished).",
            ["verdict"], registry=registry,
        )
        self.end_of_turn_seconds = Histogram(
            "secretary_realtime_end_of_turn_seconds",
            "Wall time of one end-of-turn decision (features and the model, one thread).",
            registry=registry, buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1),
        )
        self.replies_ahead = Counter(
            "secretary_realtime_replies_ahead_total",
            "Replies started in the silence before the turn ended: started, and used (played "
            "as the response; the others were dropped unheard because the user went on).",
            ["outcome"], registry=registry,
        )
