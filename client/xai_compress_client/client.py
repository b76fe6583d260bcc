"""``Client``: the entry point, holding one connection pool and the API's resources."""

from __future__ import annotations

import os
from types import TracebackType

from xai_compress_client.jobs import Jobs
from xai_compress_client.retry import RetryPolicy
from xai_compress_client.transport import Transport
from xai_compress_client.uploads import Datasets, Models
from xai_compress_client.webhooks import Webhooks

URL_ENV = "XAI_COMPRESS_URL"
KEY_ENV = "XAI_COMPRESS_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """``Client()`` talks to ``$XAI_COMPRESS_URL`` with ``$XAI_COMPRESS_API_KEY`` unless told.

    ``timeout`` is per network operation (connect, each read or write), not per call, so
    long uploads and downloads are fine. ``max_retries`` bounds retries of one request.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
    ) -> None:
        self.base_url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
        key = api_key or os.environ.get(KEY_ENV)
        self._transport = Transport(
            self.base_url, key, timeout=timeout, retry=RetryPolicy(max_retries=max_retries)
        )
        self.models = Models(self._transport)
        self.datasets = Datasets(self._transport)
        self.jobs = Jobs(self._transport)
        self.webhooks = Webhooks(self._transport)

    @classmethod
    def from_env(cls, *, timeout: float = 30.0, max_retries: int = 4) -> Client:
        """Spells out that the URL and key come from the environment (as ``Client()`` does)."""
        return cls(timeout=timeout, max_retries=max_retries)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
