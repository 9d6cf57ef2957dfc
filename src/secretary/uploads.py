"""Reading uploaded files in request handlers, shared by every service."""

from __future__ import annotations

import asyncio

from fastapi import UploadFile

from secretary import audio
from secretary.errors import InvalidRequestError, PayloadTooLargeError


async def read_upload(upload: UploadFile | None, field: str) -> bytes:
    if upload is None:
        raise InvalidRequestError(f"{field}: a file is required", param=field)
    data = await upload.read()
    if not data:
        raise InvalidRequestError(f"{field}: the uploaded file is empty", param=field)
    return data


async def read_audio(
    upload: UploadFile | None,
    field: str = "file",
    *,
    sample_rate: int = audio.WHISPER_SAMPLE_RATE,
    max_seconds: float | None = None,
) -> audio.DecodedAudio:
    """Read and decode an uploaded audio file, off the event loop.

    Decoder failures carry their own status (400 undecodable, 415 not audio); the field
    name is added to the message so the client knows which part was wrong.
    """
    data = await read_upload(upload, field)
    try:
        decoded = await asyncio.to_thread(audio.decode, data, sample_rate)
    except (audio.AudioDecodeError, audio.NoAudioStreamError, audio.EmptyAudioError) as exc:
        exc.message = f"{field}: {exc.message}"
        exc.param = field
        raise
    if max_seconds is not None and decoded.duration > max_seconds:
        raise PayloadTooLargeError(
            f"{field}: the audio lasts {decoded.duration:.0f} s, more than the limit of "
            f"{max_seconds:.0f} s",
            param=field,
        )
    return decoded
