"""One connection pool to the API: the key, retries, typed errors, paging and streaming."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from xai_compress_client.errors import TransportError, error_from_response
from xai_compress_client.retry import RetryPolicy


class Transport:
    """Sends requests with ``Authorization: Bearer``; retries what is safe to retry.

    httpx drops the Authorization header when a redirect leaves the API's origin, so an
    artifact download redirected to a presigned S3 URL never hands the key to the store.
    """

    def __init__(
        self, base_url: str, api_key: str | None, *, timeout: float, retry: RetryPolicy
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)
        self._retry = retry

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        file: Path | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (as many times as retries need); an error status raises.

        ``file`` is sent as the multipart field ``file`` and re-opened for every attempt, so a
        retry streams the whole file again instead of a half-consumed handle.
        """

        def send() -> httpx.Response:
            with ExitStack() as stack:
                files = None
                if file is not None:
                    files = {"file": (file.name, stack.enter_context(file.open("rb")))}
                return self._http.request(
                    method, path, params=params, json=json, data=form, files=files, headers=headers
                )

        return self._with_retries(send)

    def paginate(self, path: str, params: Mapping[str, Any]) -> Iterator[Any]:
        """Every item of a cursor-paged list, fetching the next page only when it is needed."""
        query = {name: value for name, value in params.items() if value is not None}
        while True:
            page = self.request("GET", path, params=query).json()
            yield from page["data"]
            if not page["has_more"]:
                return
            query["after"] = page["next_cursor"]

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        """A GET whose body is read in chunks, following redirects (presigned downloads)."""
        request = self._http.build_request("GET", path)
        response = self._with_retries(
            lambda: self._http.send(request, stream=True, follow_redirects=True)
        )
        try:
            yield response
        except httpx.TransportError as exc:
            raise TransportError(f"download of {path} broke off: {_describe(exc)}") from exc
        finally:
            response.close()

    def _with_retries(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = send()
            except httpx.TransportError as exc:
                delay = self._retry.after_error(attempt, exc)
                if delay is None:
                    raise TransportError(
                        f"no response from {self.base_url} after {attempt + 1} attempt(s): "
                        f"{_describe(exc)}"
                    ) from exc
            else:
                if not response.is_error:
                    return response
                response.read()  # a streamed error body must be read before it is parsed
                response.close()
                delay = self._retry.after_response(attempt, response)
                if delay is None:
                    raise error_from_response(response)
            time.sleep(delay)
            attempt += 1


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
