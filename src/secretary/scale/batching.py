"""Dynamic batching of final transcripts on a speech-to-text replica (``@serve.batch``).

A spoken turn's final transcript (``POST /transcribe`` with ``final``: the conversation's
and the realtime sessions' turns) is one short clip encoded in a window fitted to it
(``secretary.stt.fastfinal``). Finals of several sessions that arrive together are encoded
by Whisper's encoder as one batch and decoded by one beam search over the batch
(CTranslate2's ``encode`` and ``generate`` on a batch), with what each clip would get
alone: its own voice-activity trim, window, language (detected per clip where none is
given), prompt and token cap. On a GPU that is several clips for about the price of one;
on a few CPU cores the gain is small.

Every other transcription (``/v1/audio/transcriptions`` and ``/translations``, ``POST
/transcribe`` without ``final``, streams) runs faster-whisper's own ``transcribe`` as on the
single machine, with its timestamps, prompts, temperature fallback and windows, and only
its calls into CTranslate2 are gathered: a Whisper window's ``encode`` and a beam-search
``generate`` of one window that several transcriptions make at about the same time run as
one call on the batch. A batch holds calls with the same arguments only (beam, length
limit, suppressed tokens...) and prompts of one length (CTranslate2 needs the
start-of-transcript token at one position), so each window gets exactly the tokens, scores
and no-speech probability it gets alone, and faster-whisper, which decides everything else
from those, makes the same segments. Sampled decodes (the fallback temperatures above 0),
language detection and word alignment run alone, as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
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


_gathering = threading.local()  # .batcher: where this thread's CTranslate2 calls go


@dataclass(frozen=True)
class Call:
    """One call of a transcription into CTranslate2 that may join a batch: ``encode`` of
    one window's features, or ``generate`` of one window with one prompt. ``key``: what
    the calls of one batch share (shapes, the prompt's length, every other argument)."""

    step: str  # "encode" or "generate"
    key: tuple[Any, ...]
    inputs: np.ndarray  # features, or the encoder's output, of one window
    prompt: tuple[int, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


class GatheredWhisper:
    """CTranslate2's Whisper model as faster-whisper holds it (``WhisperModel.model``),
    with the single-window ``encode`` and beam-search ``generate`` of a thread marked by
    ``gathered`` sent to that batcher; everything else, and every other thread, calls the
    model directly."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __getattr__(self, name: str) -> Any:  # device, is_multilingual, align, ...
        return getattr(self.model, name)

    def encode(self, features: Any, to_cpu: bool = False) -> Any:
        batcher = getattr(_gathering, "batcher", None)
        if batcher is None or features.shape[0] != 1 or features.device != "cpu":
            return self.model.encode(features, to_cpu=to_cpu)
        array = np.array(features)
        return batcher.gather(Call("encode", ("encode", array.shape), array))

    def generate(self, features: Any, prompts: list[list[int]], **kwargs: Any) -> Any:
        batcher = getattr(_gathering, "batcher", None)
        if (batcher is None or len(prompts) != 1 or features.shape[0] != 1
                or features.device != "cpu" or kwargs.get("sampling_temperature", 1) != 1
                or kwargs.get("sampling_topk", 1) != 1 or kwargs.get("num_hypotheses", 1) != 1):
            return self.model.generate(features, prompts, **kwargs)
        frozen = tuple(sorted((k, _frozen(v)) for k, v in kwargs.items()))
        array = np.array(features)
        return [batcher.gather(Call("generate",
                                    ("generate", array.shape, len(prompts[0]), frozen),
                                    array, tuple(prompts[0]), frozen))]


def run_calls(model: Any, calls: list[Call]) -> list[tuple[bool, Any]]:
    """Blocking: the calls grouped by their key, each group as one call on the model
    (CTranslate2's ``Whisper``); each call's result (or its error) as alone."""
    import ctranslate2

    results: list[tuple[bool, Any]] = [(False, None)] * len(calls)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, call in enumerate(calls):
        groups.setdefault(call.key, []).append(index)
    for members in groups.values():
        first = calls[members[0]]
        inputs = ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.concatenate([calls[i].inputs for i in members])))
        try:
            if first.step == "encode":
                encoded = np.array(model.encode(inputs, to_cpu=True))
                outputs: list[Any] = [
                    ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded[row:row + 1]))
                    for row in range(len(members))]
            else:
                outputs = model.generate(inputs, [list(calls[i].prompt) for i in members],
                                         **{k: list(v) if isinstance(v, tuple) else v
                                            for k, v in first.kwargs})
        except Exception as exc:  # noqa: BLE001 - each caller raises it as alone
            for index in members:
                results[index] = (False, exc)
            continue
        for index, output in zip(members, outputs, strict=True):
            results[index] = (True, output)
    return results


class Gatherer:
    """The replica's batcher of CTranslate2 calls (``@serve.batch`` on its event loop):
    calls that arrive within ``wait_s`` of the first, up to ``max_batch_size``, run as one
    batch (``run_calls``); ``secretary_stt_window_batch_size`` counts each group."""

    def __init__(self, max_batch_size: int, wait_s: float, registry: CollectorRegistry
                 ) -> None:
        from ray import serve

        self.model: Any = None  # CTranslate2's Whisper itself, never the gathering wrapper
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sizes = Histogram(
            "secretary_stt_window_batch_size",
            "Whisper windows of separate transcriptions encoded or decoded together, per "
            "call into CTranslate2 ('encode' or 'generate').",
            ["step"], buckets=_SIZE_BUCKETS, registry=registry)

        async def run(calls: list[Call]) -> list[tuple[bool, Any]]:
            keys: dict[tuple[Any, ...], int] = {}
            for call in calls:
                keys[call.key] = keys.get(call.key, 0) + 1
            for key, size in keys.items():
                self.sizes.labels(key[0]).observe(size)
            return await asyncio.to_thread(run_calls, self.model, calls)

        self._batched = serve.batch(max_batch_size=max_batch_size,
                                    batch_wait_timeout_s=wait_s)(run)

    def gather(self, call: Call) -> Any:
        """Blocking, on a worker thread: the call's result once its batch has run."""
        check_cancelled()
        if self.loop is None:
            raise RuntimeError("the batcher has no event loop yet")
        future = asyncio.run_coroutine_threadsafe(self._batched(call), self.loop)
        ok, value = future.result()
        if not ok:
            raise value
        return value


@contextlib.contextmanager
def gathered(gatherer: Gatherer) -> Iterator[None]:
    """This thread's CTranslate2 calls go to ``gatherer`` while inside."""
    previous = getattr(_gathering, "batcher", None)
    _gathering.batcher = gatherer
    try:
        yield
    finally:
        _gathering.batcher = previous


def _each_gathered(gatherer: Gatherer, segments: Iterator[Segment]) -> Iterator[Segment]:
    """The segments, each decoded (on whichever thread asks for it) with its calls
    gathered."""
    while True:
        with gathered(gatherer):
            try:
                segment = next(segments)
            except StopIteration:
                return
        yield segment


class BatchedFinals:
    """The Whisper engine with its final transcripts batched across requests, and the
    windows of its other transcriptions gathered into batches (``Gatherer``).

    The service runs each request's decode on a worker thread; a final's thread hands its
    clip to the replica's event loop, where ``@serve.batch`` gathers the clips that arrive
    within ``wait_s`` (up to ``max_batch_size``), and waits for its own result. Any other
    transcription runs the engine's own ``transcribe`` with its calls into CTranslate2
    gathered the same way. Everything else goes to the engine as it is."""

    def __init__(self, engine: WhisperEngine, max_batch_size: int, wait_s: float,
                 registry: CollectorRegistry) -> None:
        from ray import serve

        self.engine = engine
        self.name = engine.name
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sizes = Histogram("secretary_stt_batch_size",
                               "Final transcripts decoded together, per batch.",
                               buckets=_SIZE_BUCKETS, registry=registry)
        self.gatherer = Gatherer(max_batch_size, wait_s, registry)

        async def decode(clips: list[Clip]) -> list[tuple[TranscriptionInfo, list[Segment]]]:
            self.sizes.observe(len(clips))
            log.debug("decoding a batch of %d final transcripts", len(clips))
            return await asyncio.to_thread(decode_batch, self.engine, clips)

        self._batched = serve.batch(max_batch_size=max_batch_size,
                                    batch_wait_timeout_s=wait_s)(decode)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @loop.setter
    def loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = self.gatherer.loop = loop

    def __getattr__(self, name: str) -> Any:  # loaded, describe, languages, check...
        return getattr(self.engine, name)

    def load(self) -> None:
        """Load the engine and route its model's calls through the gathering wrapper
        (which calls the model directly on any thread not marked by ``gathered``)."""
        self.engine.load()
        whisper = self.engine._model
        if not isinstance(whisper.model, GatheredWhisper):
            self.gatherer.model = whisper.model
            whisper.model = GatheredWhisper(whisper.model)

    def transcribe(self, audio: np.ndarray, options: TranscriptionOptions
                   ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        if self.loop is None:
            return self.engine.transcribe(audio, options)
        self.load()
        if not batchable(options):
            with gathered(self.gatherer):
                info, segments = self.engine.transcribe(audio, options)
            return info, _each_gathered(self.gatherer, segments)
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
