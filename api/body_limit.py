"""Every request body has a size limit, enforced on the bytes as they arrive.

JSON bodies are parsed whole into memory, so without a limit one request of gigabytes costs
gigabytes. Uploads are streamed to disk by ``api/multipart.py``, which enforces the file
limit itself; their bodies are still capped here at that limit plus the room form fields
take. A declared ``Content-Length`` above the limit is refused before anything is read; a
chunked body is refused at the chunk that crosses it.

The refusal is raised from inside ``receive`` as an ``HTTPException``, which FastAPI's body
parsing lets through, so the app's handlers render it as problem+json (413
``payload_too_large``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than the limit of {limit} bytes.")


class BodyLimit:
    """ASGI middleware: ``limit_for(scope)`` bytes of body at most."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        too_large_declared = declared.isdigit() and int(declared) > limit
        received = 0

        async def limited() -> Message:
            nonlocal received
            if too_large_declared:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)
