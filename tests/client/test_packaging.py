"""The client is its own distribution: importing it must not pull in the server or torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SERVER_SIDE = {"api", "worker", "compression", "jobspec", "torch", "tqdm"}


def test_importing_the_client_loads_nothing_of_the_server(tmp_path: Path) -> None:
    code = (
        "import sys, xai_compress_client, xai_compress_client.cli, xai_compress_client.webhooks\n"
        "print(' '.join({name.split('.')[0] for name in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "httpx" in loaded and not loaded & SERVER_SIDE
