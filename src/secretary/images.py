"""Checks on uploaded images before they are decoded.

An image's pixel count is read from its header (Pillow opens lazily: only the header is
parsed), so a small file that claims 30000x30000 pixels is refused before a decoder
allocates gigabytes for it, whichever engine decodes it afterwards.
"""

from __future__ import annotations

import io
import re
import warnings

from PIL import Image, UnidentifiedImageError

from secretary.errors import PayloadTooLargeError, UnsupportedMediaError


def check_image(data: bytes, field: str, max_pixels: int) -> tuple[int, int]:
    """The image's (width, height) from its header; 415 when it is not an image that can
    be read, 413 when it has more than ``max_pixels`` pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:
        # Pillow's own ceiling (far above ours) gives the pixel count only.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(found.group(1)) / 1e6:g} megapixels" if found else "too many pixels"
        raise PayloadTooLargeError(
            f"{field}: the image has {pixels}, more than the limit of "
            f"{max_pixels / 1e6:g} megapixels", param=field) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnsupportedMediaError(
            f"{field}: not an image that can be read (send a JPEG, PNG or WebP photo)",
            param=field) from exc
    if width <= 0 or height <= 0:
        raise UnsupportedMediaError(f"{field}: the image header gives no size", param=field)
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"{field}: the image has {width}x{height} pixels ({width * height / 1e6:g} "
            f"megapixels), more than the limit of "
            f"{max_pixels / 1e6:g} megapixels", param=field)
    return width, height
