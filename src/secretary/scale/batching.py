"""Dynamic batching of final transcripts on a speech-to-text replica (``@serve.batch``).

A spoken turn's final transcript (``POST /transcribe`` with ``final``: the conversation's
and the realtime sessions' turns) is one short clip encoded in a window fitted to it
(``secretary.stt.fastfinal``). Finals of several sessions that arrive together are encoded
by Whisper's encoder as one batch and decoded by one beam search over the batch
(CTranslate2's ``encode`` and ``generate`` on a batch), with what each clip would get
alone: its own voice-activity trim, window, language (detected per clip where none is
given), prompt and token cap. On a GPU that is several clips for about the price of one;
on a few CPU cores the gain is small.

Everything else (whole files, streams, word timestamps, the full 30 s window) runs as on
the single machine: faster-whisper's sequential decoding with its timestamps and
temperature fallback, which a batch across requests would change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from secretary.audio import WHISPER_SAMPLE_RATE
from secretary.config import Settings
from secretary.stt.engine import Segment, TranscriptionInfo, TranscriptionOptions
from secretary.stt.whisper import WhisperEngine
from secretary.web.queue import check_cancelled

log = logging.getLogger(__name__)

FULL_WINDOW = 30
_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class Clip:
    """One final transcript to decode: 16 kHz samples and the options it came with."""

    samples: np.ndarray
    options: TranscriptionOptions


def batchable(options: TranscriptionOptions) -> bool:
    """Whether a transcription runs the single-pass fitted-window decode that batches
    (a final transcript), rather than faster-whisper's sequential one."""
    return (options.window_seconds is not None and options.window_seconds < FULL_WINDOW
            and not options.word_timestamps)


def decode_batch(engine: WhisperEngine, clips: list[Clip]
                 ) -> list[tuple[TranscriptionInfo, list[Segment]]]:
    """Blocking: each clip's transcript as ``engine.transcribe`` gives it alone, with the
    clips of one window and beam size encoded and decoded together."""
    engine.load()
    results: list[tuple[TranscriptionInfo, list[Segment]] | None] = [None] * len(clips)
    groups: dict[tuple[int, int], list[int]] = {}
    prepared: list[tuple[np.ndarray, TranscriptionInfo]] = []
    for index, clip in enumerate(clips):
        speech, info = _speech(engine, clip)
        prepared.append((speech, info))
        if len(speech) == 0:
            results[index] = (info, [])
            continue
        beam = clip.options.beam_size or engine.settings.beam_size
        groups.setdefault((int(clip.options.window_seconds or FULL_WINDOW), beam),
                          []).append(index)
    for (window, beam), members in groups.items():
        decoded = _decode_group(engine, window, beam, [clips[i] for i in members],
                                [prepared[i] for i in members])
        for index, result in zip(members, decoded, strict=True):
            results[index] = result
    return [r for r in results if r is not None]


def _speech(engine: WhisperEngine, clip: Clip) -> tuple[np.ndarray, TranscriptionInfo]:
    """The clip's speech (Silero's voice-activity trim where asked) and its info."""
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    options, audio = clip.options, clip.samples
    vad = engine.settings.vad_filter if options.vad_filter is None else options.vad_filter
    speech = audio
    if vad:
        stamps = get_speech_timestamps(audio, VadOptions())
        speech = np.concatenate(collect_chunks(audio, stamps)[0]) if stamps else audio[:0]
    duration = len(audio) / WHISPER_SAMPLE_RATE
    info = TranscriptionInfo(language=options.language or "", language_probability=1.0,
                             duration=duration,
                             duration_after_vad=len(speech) / WHISPER_SAMPLE_RATE)
    return speech, info


def _decode_group(engine: WhisperEngine, window: int, beam: int, clips: list[Clip],
                  prepared: list[tuple[np.ndarray, TranscriptionInfo]]
                  ) -> list[tuple[TranscriptionInfo, list[Segment]]]:
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    model = engine._model  # the loaded faster-whisper model, shared with single requests
    frames = window * WHISPER_SAMPLE_RATE // 160
    features = np.stack([pad_or_trim(model.feature_extractor(speech)[:, :frames], frames)
                         for speech, _ in prepared])
    encoded = model.encode(features)
    infos = [info for _, info in prepared]
    if any(c.options.language is None for c in clips):
        ranked = model.model.detect_language(encoded)
        for i, clip in enumerate(clips):
            if clip.options.language is None:
                best = ranked[i][0]
                infos[i] = TranscriptionInfo(best[0][2:-2], float(best[1]), infos[i].duration,
                                             infos[i].duration_after_vad)
    tokenizers = [Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                            task=clip.options.task, language=info.language)
                  for clip, info in zip(clips, infos, strict=True)]
    prompts = [model.get_prompt(t, [], without_timestamps=True) for t in tokenizers]
    # Each clip's own length limit, as alone; the batch runs to the longest and each
    # result is cut to its own (a clip that reaches it is a loop to its caller either way).
    limits = [min(model.max_length,
                  len(prompt) + (clip.options.max_new_tokens or model.max_length // 2))
              for clip, prompt in zip(clips, prompts, strict=True)]
    generated = model.model.generate(
        encoded, prompts, beam_size=beam, max_length=max(limits), return_scores=True,
        return_no_speech_prob=True, suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]))
    results = []
    for i, result in enumerate(generated):
        tokenizer, info = tokenizers[i], infos[i]
        tokens = [t for t in result.sequences_ids[0][:limits[i] - len(prompts[i])]
                  if t < tokenizer.eot]
        avg_logprob = float(result.scores[0]) if result.scores else 0.0
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:  # Whisper's silence rule
            tokens = []
        text = tokenizer.decode(tokens)
        segment = Segment(id=1, start=0.0, end=round(info.duration, 3), text=text,
                          tokens=tokens, avg_logprob=avg_logprob,
                          no_speech_prob=float(result.no_speech_prob))
        results.append((info, [segment] if text.strip() else []))
    return results


class BatchedFinals:
    """The Whisper engine with its final transcripts batched across requests.

    The service runs each request's decode on a worker thread; a final's thread hands its
    clip to the replica's event loop, where ``@serve.batch`` gathers the clips that arrive
    within ``wait_s`` (up to ``max_batch_size``), and waits for its own result. Every other
    call goes to the engine as it is."""

    def __init__(self, engine: WhisperEngine, max_batch_size: int, wait_s: float,
                 registry: CollectorRegistry) -> None:
        from ray import serve

        self.engine = engine
        self.name = engine.name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sizes = Histogram("secretary_stt_batch_size",
                               "Final transcripts decoded together, per batch.",
                               buckets=_SIZE_BUCKETS, registry=registry)

        async def decode(clips: list[Clip]) -> list[tuple[TranscriptionInfo, list[Segment]]]:
            self.sizes.observe(len(clips))
            log.debug("decoding a batch of %d final transcripts", len(clips))
            return await asyncio.to_thread(decode_batch, self.engine, clips)

        self._batched = serve.batch(max_batch_size=max_batch_size,
                                    batch_wait_timeout_s=wait_s)(decode)

    def __getattr__(self, name: str) -> Any:  # loaded, load, describe, languages, check...
        return getattr(self.engine, name)

    def transcribe(self, audio: np.ndarray, options: TranscriptionOptions
                   ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        if not batchable(options) or self.loop is None:
            return self.engine.transcribe(audio, options)
        check_cancelled()
        future = asyncio.run_coroutine_threadsafe(self._batched(Clip(audio, options)),
                                                  self.loop)
        info, segments = future.result()
        return info, iter(segments)


class _OnLoop:
    """ASGI: note the event loop the app runs on (from its lifespan start), where the
    batches are gathered."""

    def __init__(self, app: FastAPI, batcher: BatchedFinals) -> None:
        self.app = app
        self.batcher = batcher

    def __getattr__(self, name: str) -> Any:  # routes, state...: Serve reads the app's
        if name == "app":  # not set yet
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.batcher.loop is None:
            self.batcher.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)


def create_batched_stt_app(settings: Settings) -> ASGIApp:
    """The speech-to-text app of ``secretary.stt.app`` with batched finals
    (SECRETARY_RAY_STT_BATCH_SIZE clips at most, SECRETARY_RAY_STT_BATCH_WAIT_MS); the
    batch sizes are on its ``/metrics`` (``secretary_stt_batch_size``)."""
    from secretary.stt.app import create_app
    from secretary.stt.models import WhisperModels

    registry = CollectorRegistry()
    engine = WhisperEngine(settings.stt, WhisperModels(settings.models_dir))
    batcher = BatchedFinals(engine, settings.ray.stt_batch_size,
                            settings.ray.stt_batch_wait_ms / 1000, registry)
    app = create_app(settings, engine=batcher)  # type: ignore[arg-type]
    app.state.metrics.include(registry)
    return _OnLoop(app, batcher)
