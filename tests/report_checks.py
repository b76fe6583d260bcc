"""What every report.html must satisfy, shared by the engine, API and browser tests:
it renders offline (nothing fetched from anywhere) and its numbers are the job's metrics."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from typing import Any

from PIL import Image

URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background"}
PNG_PREFIX = "data:image/png;base64,"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.numbers: list[tuple[str, str, str]] = []
        self._open: tuple[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {name: value or "" for name, value in attrs}
        self.urls += [
            (tag, name, value) for name, value in values.items() if name in URL_ATTRIBUTES
        ]
        if "data-metric" in values:
            self._open, self._text = (values["data-metric"], values["data-unit"]), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == "span":
            self.numbers.append((*self._open, "".join(self._text)))
            self._open = None


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def assert_offline(html: str) -> list[bytes]:
    """No script, no stylesheet link, no reference to any URL: every image is an embedded,
    decodable PNG. Returns the PNGs."""
    assert re.search(r"(?i)https?:|//[a-z0-9.-]+\.[a-z]{2,}/", html) is None
    assert re.search(r"(?i)@import|url\(", html) is None
    page = parse(html)
    assert not {"script", "link", "iframe", "object", "embed", "base"} & set(page.tags)
    images = []
    for tag, name, value in page.urls:
        assert (tag, name) == ("img", "src") and value.startswith(PNG_PREFIX), (tag, name)
        png = base64.b64decode(value.removeprefix(PNG_PREFIX), validate=True)
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 50
        images.append(png)
    return images


def metric(metrics: dict[str, Any], path: str) -> Any:
    """``metrics`` at a dotted path; list items by index, and a key that itself holds dots
    (``model.onnx``) as the rest of the path."""
    value: Any = metrics
    parts = path.split(".")
    while parts:
        if isinstance(value, list):
            value, parts = value[int(parts[0])], parts[1:]
            continue
        for cut in range(len(parts), 0, -1):
            key = ".".join(parts[:cut])
            if key in value:
                value, parts = value[key], parts[cut:]
                break
        else:
            raise KeyError(path)
    return value


def shown_value(text: str, unit: str) -> float:
    """The number a report shows, in the metrics' units (percent back to a fraction)."""
    number = float(re.sub(r"[^0-9.eE+-]", "", text.replace(",", "")))
    return number / 100 if unit == "percent" else number


TOLERANCE = {"percent": 0.00005, "ratio": 0.005, "ms": 0.0005, "bytes": 0, "count": 0}


def assert_numbers_match(numbers: list[tuple[str, str, str]], metrics: dict[str, Any]) -> int:
    """Every ``(path, unit, text)`` shown equals the metric at ``path`` to the precision it
    is printed with; returns how many were checked."""
    for path, unit, text in numbers:
        expected = metric(metrics, path)
        if expected is None:
            assert text == "–", (path, text)
            continue
        tolerance = TOLERANCE.get(unit, abs(expected) * 0.006)
        assert abs(shown_value(text, unit) - expected) <= tolerance + 1e-12, (path, text, expected)
    return len(numbers)
