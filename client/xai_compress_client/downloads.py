"""Saving an artifact to disk, checked against the listing before it gets its real name."""

from __future__ import annotations

import hashlib
from pathlib import Path

from xai_compress_client.errors import IntegrityError
from xai_compress_client.objects import Artifact
from xai_compress_client.transport import Transport


def save_artifact(transport: Transport, artifact: Artifact, directory: Path) -> Path:
    """Stream ``artifact`` into ``directory``; IntegrityError (and no file) if it does not match.

    The bytes go to a hidden partial file first, so a broken or corrupted download never sits
    under the artifact's name where it could be mistaken for the real one.
    """
    if Path(artifact.name).name != artifact.name or artifact.name.startswith("."):
        raise IntegrityError(f"refusing the artifact name {artifact.name!r}: not a plain file name")
    target = directory / artifact.name
    partial = directory / f".{artifact.name}.part"
    digest, size = hashlib.sha256(), 0
    try:
        with transport.stream(artifact.download_url) as response, partial.open("wb") as out:
            for chunk in response.iter_bytes():
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if size != artifact.size_bytes or digest.hexdigest() != artifact.sha256:
            raise IntegrityError(
                f"{artifact.name}: got {size} bytes with sha256 {digest.hexdigest()}, "
                f"the listing says {artifact.size_bytes} bytes with sha256 {artifact.sha256}"
            )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial.replace(target)
