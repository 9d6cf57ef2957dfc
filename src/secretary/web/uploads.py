"""Reading uploaded files in request handlers, shared by every service's ``app.py``.

Only the HTTP side: an upload becomes bytes here, and the service decodes them.
"""

from __future__ import annotations

from fastapi import UploadFile

from secretary.errors import InvalidRequestError


async def read_upload(upload: UploadFile | None, field: str) -> bytes:
    if upload is None:
        raise InvalidRequestError(f"{field}: a file is required", param=field)
    data = await upload.read()
    if not data:
        raise InvalidRequestError(f"{field}: the uploaded file is empty", param=field)
    return data
