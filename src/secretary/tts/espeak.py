"""eSpeak NG as a text-to-speech engine: every language it knows, robotic but always there.

The library and its data come from the ``espeakng-loader`` wheel (no system package); they
are driven through ctypes. eSpeak's API is process-global (one current voice, one rate, one
callback), so every call goes through one lock: requests are served one after another.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from secretary.audio import from_pcm16
from secretary.errors import (
    InvalidRequestError,
    ModelUnavailableError,
    NotImplementedByEngineError,
)
from secretary.tts.engine import SynthesisRequest, Voice

log = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1  # espeak_PARAMETER: words per minute
_NORMAL_RATE = 175  # eSpeak's default words per minute: speed 1
_MIN_RATE, _MAX_RATE = 20, 1000  # what this eSpeak build accepts (fast rates use sonic)

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _EspeakVoiceStruct(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 (ctypes needs a plain class attribute)
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, name, NUL)* NUL
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _Library:
    """The loaded library, initialised once per process; use only under ``_LOCK``."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise ModelUnavailableError(
                "eSpeak NG is not installed: pip install espeakng-loader"
            ) from exc
        self.data_path = Path(espeakng_loader.get_data_path())
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                          ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                     ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                     ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoiceStruct))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                     str(self.data_path).encode(), 0)
        if rate <= 0:
            raise ModelUnavailableError(f"eSpeak NG failed to initialise (status {rate})")
        self.lib = lib
        self.sample_rate = rate
        self._pieces: list[np.ndarray] = []
        # The callback object must live as long as the library may call it.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count: int, _events) -> int:  # type: ignore[no-untyped-def]
        if wav and count > 0:
            self._pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # go on

    def list_voices(self) -> list[tuple[str, str, list[tuple[int, str]]]]:
        """(name, identifier, [(priority, language)]) of every voice in the data; a lower
        priority number means the voice is a better choice for that language."""
        found = []
        table = self.lib.espeak_ListVoices(None)
        index = 0
        while table[index]:
            entry = table[index].contents
            languages = []
            pointer = entry.languages
            while True:
                priority = ctypes.string_at(pointer, 1)[0]
                if priority == 0:
                    break
                code = ctypes.string_at(pointer + 1)
                languages.append((priority, code.decode()))
                pointer += 2 + len(code)
            found.append((entry.name.decode(), entry.identifier.decode(), languages))
            index += 1
        return found

    def synthesize(self, text: str, voice: str, rate: int) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InvalidRequestError(f"eSpeak NG has no voice {voice!r}", param="voice")
        self.lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
        data = text.encode("utf-8")
        self._pieces = []
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8,
                                       None, None)
        if status != 0:
            raise ModelUnavailableError(f"eSpeak NG failed to synthesize (status {status})")
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return np.zeros(0, np.float32)
        return from_pcm16(np.concatenate(pieces))


_LOCK = threading.Lock()
_library: _Library | None = None


def _get_library() -> _Library:
    global _library
    if _library is None:
        _library = _Library()
    return _library


class EspeakEngine:
    name = "espeak"

    def __init__(self) -> None:
        self._voices: dict[str, Voice] = {}
        self._identifiers: dict[str, str] = {}  # voice id -> eSpeak's voice file name
        self._by_language: dict[str, tuple[int, str]] = {}
        self._sample_rate = 22050

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def loaded(self) -> bool:
        return bool(self._voices)

    def load(self) -> None:
        with _LOCK:
            if self._voices:
                return
            library = _get_library()
            self._sample_rate = library.sample_rate
            voices: dict[str, Voice] = {}
            for name, identifier, languages in library.list_voices():
                if identifier.startswith("mb/") or not languages:
                    continue  # MBROLA voices need a separate program and its databases
                voice_id = languages[0][1]
                if not _has_dictionary(library.data_path, identifier, voice_id):
                    continue  # the wheel leaves out a few dictionaries: such voices mumble
                self._identifiers.setdefault(voice_id, identifier)
                voices.setdefault(voice_id, Voice(
                    id=voice_id, engine=self.name, languages=tuple(c for _, c in languages),
                    description=f"eSpeak NG {name}",
                ))
                for priority, language in languages:
                    best = self._by_language.get(language.lower())
                    if best is None or priority < best[0]:
                        self._by_language[language.lower()] = (priority, voice_id)
            self._voices = voices
            log.info("eSpeak NG ready: %d voices at %d Hz", len(voices), self._sample_rate)

    def voices(self) -> list[Voice]:
        self.load()
        return list(self._voices.values())

    def _voice_for(self, request: SynthesisRequest) -> str:
        if request.voice:
            if request.voice not in self._voices:
                raise InvalidRequestError(f"eSpeak NG has no voice {request.voice!r}",
                                          param="voice")
            return request.voice
        language = request.language.lower()
        best = self._by_language.get(language) or self._by_language.get(
            language.split("-")[0]
        )
        if best is None:
            raise InvalidRequestError(f"eSpeak NG does not speak {request.language!r}",
                                      param="language")
        return best[1]

    def synthesize(self, request: SynthesisRequest) -> Iterator[np.ndarray]:
        self.load()
        if request.reference is not None:
            raise NotImplementedByEngineError("eSpeak NG cannot clone voices")
        voice = self._voice_for(request)
        rate = round(min(max(_NORMAL_RATE * request.speed, _MIN_RATE), _MAX_RATE))
        with _LOCK:
            samples = _get_library().synthesize(request.text, self._identifiers[voice], rate)
        yield samples


def _has_dictionary(data_path: Path, identifier: str, voice_id: str) -> bool:
    """Whether the pronunciation dictionary the voice names (or its language's) is there."""
    dictionary = voice_id.split("-")[0]
    voice_file = data_path / "lang" / identifier
    if voice_file.is_file():
        for line in voice_file.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "dictionary":
                dictionary = words[1]
    return (data_path / f"{dictionary}_dict").is_file()
