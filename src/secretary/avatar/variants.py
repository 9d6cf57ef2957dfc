"""The per-photo caches every avatar engine keeps: prepared photos by content key, and for
each photo a few output sizes (the photo resized, with what the engine builds on it)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import cv2
import numpy as np

from secretary.avatar.landmarks import FaceLandmarks, Landmarker
from secretary.errors import NotFoundError, UnprocessableError

# Output sizes kept per photo: a page asks for one or two, so more would only hold memory.
SIZES_PER_SOURCE = 3

S = TypeVar("S")
V = TypeVar("V")


def cached_source(sources: OrderedDict[str, S], lock: threading.Lock, key: str) -> S:
    """The prepared photo under ``key``, marked as recently used."""
    with lock:
        source = sources.get(key)
        if source is None:
            raise NotFoundError(f"source {key!r} is not prepared (or left the cache)")
        sources.move_to_end(key)
        return source


def cached_variant(image: np.ndarray, variants: OrderedDict[int, V], lock: threading.Lock,
                   size: int | None,
                   build: Callable[[np.ndarray, float, tuple[int, int]], V]) -> V:
    """The variant of ``image`` whose longest side is ``size`` (None: as it is), built once
    by ``build(resized, factor, (width, height))`` and kept among the last few sizes."""
    height, width = image.shape[:2]
    longest = max(width, height)
    size = longest if size is None else int(size)
    with lock:
        variant = variants.get(size)
        if variant is not None:
            variants.move_to_end(size)
            return variant
        factor = size / longest
        dims = (max(1, round(width * factor)), max(1, round(height * factor)))
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        variant = build(cv2.resize(image, dims, interpolation=interpolation), factor, dims)
        variants[size] = variant
        while len(variants) > SIZES_PER_SOURCE:
            variants.popitem(last=False)
        return variant


def remembered(sources: OrderedDict[str, S], lock: threading.Lock, key: str) -> S | None:
    """The photo prepared under ``key`` if it is still cached (marked as recently used)."""
    with lock:
        source = sources.get(key)
        if source is not None:
            sources.move_to_end(key)
        return source


def remember(sources: OrderedDict[str, S], lock: threading.Lock, key: str, source: S,
             limit: int) -> None:
    """Cache a prepared photo, dropping the least recently used beyond ``limit``."""
    with lock:
        sources[key] = source
        while len(sources) > limit:
            sources.popitem(last=False)


def find_face(landmarker: Landmarker, image: np.ndarray) -> FaceLandmarks:
    """The face the landmarker finds in a source photo, or the 422 that says there is none."""
    found = landmarker.detect(image)
    if found is None:
        raise UnprocessableError(
            "source_image: no face was found in this image; send a photo in which one "
            "face is clearly visible",
            param="source_image",
        )
    return found
