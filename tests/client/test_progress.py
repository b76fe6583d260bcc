"""The wait progress bar: shown on a terminal with tqdm, silent otherwise."""

from __future__ import annotations

import io
import sys

import pytest
from xai_compress_client.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_shows_stage_percent_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress_bar(True) as show:
        show("attributing", 0.345, 12.4)
    assert "34%" in sys.stderr.getvalue() and "attributing, ETA 12s" in sys.stderr.getvalue()


@pytest.mark.parametrize(
    ("stream", "enabled", "tqdm_installed"),
    [(io.StringIO, True, True), (Terminal, False, True), (Terminal, True, False)],
)
def test_otherwise_nothing_is_shown(
    monkeypatch: pytest.MonkeyPatch, stream: type[io.StringIO], enabled: bool, tqdm_installed: bool
) -> None:
    monkeypatch.setattr(sys, "stderr", stream())
    if not tqdm_installed:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    with progress_bar(enabled) as show:
        show("attributing", 0.5, None)
    assert sys.stderr.getvalue() == ""
