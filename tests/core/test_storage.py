"""Storage backends against real components: local files in tmp_path, S3 over HTTP (moto)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from core.settings import Settings
from core.storage import (
    LocalStorage,
    ObjectNotFound,
    Storage,
    StorageUnavailable,
    attachment_header,
    make_storage,
)
from core.storage.s3 import S3Storage

CHUNK = 1 << 20
BIG = 3 * CHUNK + 17


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server per module; each test gets its own bucket on it."""
    with pytest.MonkeyPatch.context() as mp:
        # Dummy credentials, so nothing here can ever pick up real ones.
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


def _s3(endpoint: str) -> S3Storage:
    return S3Storage(
        endpoint_url=endpoint,
        bucket=f"test-{uuid.uuid4().hex[:16]}",
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        presign_seconds=60,
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    return _s3(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def s3_storage(moto_endpoint: str) -> S3Storage:
    return _s3(moto_endpoint)


def _payload(n: int) -> bytes:
    return random.Random(n).randbytes(n)


def _read(storage: Storage, key: str, chunk_size: int = CHUNK) -> bytes:
    chunks = list(storage.iter_chunks(key, chunk_size))
    assert all(0 < len(c) <= chunk_size for c in chunks)
    return b"".join(chunks)


def test_put_file_round_trips_a_multi_chunk_file(storage: Storage, tmp_path: Path) -> None:
    data = _payload(BIG)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)

    storage.put_file("projects/prj_a/models/mdl_b/model.bin", src)

    chunks = list(storage.iter_chunks("projects/prj_a/models/mdl_b/model.bin", CHUNK))
    assert len(chunks) == 4
    assert all(len(c) <= CHUNK for c in chunks)
    assert b"".join(chunks) == data
    assert storage.size("projects/prj_a/models/mdl_b/model.bin") == BIG
    assert storage.exists("projects/prj_a/models/mdl_b/model.bin")


def test_put_replaces_an_existing_object(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes("k/v.bin", b"old contents")
    src = tmp_path / "new.bin"
    src.write_bytes(b"new")

    storage.put_file("k/v.bin", src)

    assert _read(storage, "k/v.bin") == b"new"
    assert storage.size("k/v.bin") == 3


def test_put_bytes_round_trips_with_small_chunks(storage: Storage) -> None:
    data = b'{"accuracy": 0.97}\n' * 10

    storage.put_bytes("jobs/job_1/metrics.json", data)

    assert _read(storage, "jobs/job_1/metrics.json", chunk_size=7) == data
    assert storage.size("jobs/job_1/metrics.json") == len(data)
    storage.put_bytes("empty", b"")
    assert _read(storage, "empty") == b""
    assert storage.size("empty") == 0


def test_download_to_copies_byte_exact(storage: Storage, tmp_path: Path) -> None:
    data = _payload(BIG)
    storage.put_bytes("datasets/ds_1/data.npz", data)
    dest = tmp_path / "work" / "nested" / "data.npz"

    storage.download_to("datasets/ds_1/data.npz", dest)

    assert dest.read_bytes() == data
    assert storage.exists("datasets/ds_1/data.npz")  # a download leaves the object in place


def test_missing_objects_raise_object_not_found(storage: Storage, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    with pytest.raises(ObjectNotFound) as info:
        storage.iter_chunks("no/such.bin")  # at call time, before any iteration
    assert info.value.key == "no/such.bin"
    with pytest.raises(ObjectNotFound):
        storage.size("no/such.bin")
    with pytest.raises(ObjectNotFound):
        storage.download_to("no/such.bin", dest)
    assert not dest.exists()
    assert not storage.exists("no/such.bin")


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.delete("never/stored.bin")
    storage.put_bytes("a/b.bin", b"x")

    storage.delete("a/b.bin")
    storage.delete("a/b.bin")

    assert not storage.exists("a/b.bin")
    with pytest.raises(ObjectNotFound):
        storage.size("a/b.bin")


def test_delete_prefix_removes_one_folder_only(storage: Storage) -> None:
    storage.delete_prefix("projects/prj_gone")  # nothing stored yet: fine
    doomed = ["projects/prj_1/m.bin", "projects/prj_1/models/mdl/model.bin"]
    kept = ["projects/prj_10/m.bin", "projects/prj_2/m.bin", "other"]
    for key in doomed + kept:
        storage.put_bytes(key, key.encode())

    storage.delete_prefix("projects/prj_1")
    storage.delete_prefix("projects/prj_1/")

    assert [k for k in doomed if storage.exists(k)] == []
    assert all(_read(storage, k) == k.encode() for k in kept)
    # A trailing slash names a folder: fine as a prefix, never as an object key.
    with pytest.raises(ValueError):
        storage.put_bytes("projects/", b"x")
    with pytest.raises(ValueError):
        storage.delete_prefix("/")


BAD_KEYS = ["", "../x", "a/../../x", "/abs", "a\\b", "a\x00b", "a//b", "./a"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_rejected(storage: Storage, tmp_path: Path, key: str) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    calls = [
        lambda: storage.put_file(key, src),
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.iter_chunks(key),
        lambda: storage.download_to(key, tmp_path / "out.bin"),
        lambda: storage.size(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.delete_prefix(key),
        lambda: storage.presigned_url(key),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()
    assert src.exists()
    assert not (tmp_path / "x").exists()


def test_check_passes_on_a_working_backend(storage: Storage) -> None:
    storage.check()
    storage.check()


def test_local_presigned_url_is_none(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("a.bin", b"x")
    assert storage.presigned_url("a.bin", filename="a.bin") is None


def test_s3_presigned_url_downloads_as_attachment(s3_storage: S3Storage) -> None:
    data = _payload(BIG)
    s3_storage.put_bytes("projects/p/models/m/model.onnx", data)

    url = s3_storage.presigned_url("projects/p/models/m/model.onnx", filename="resnet ö.onnx")

    assert url is not None
    assert url.startswith("http://")
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    disposition = response.headers["content-disposition"]
    assert disposition == attachment_header("resnet ö.onnx")
    assert 'filename="resnet _.onnx"' in disposition
    assert "filename*=UTF-8''resnet%20%C3%B6.onnx" in disposition


def test_s3_presigned_url_without_filename(s3_storage: S3Storage) -> None:
    s3_storage.put_bytes("a.bin", b"plain")
    url = s3_storage.presigned_url("a.bin")
    assert url is not None
    response = httpx.get(url)
    assert response.content == b"plain"
    assert "content-disposition" not in response.headers


def test_s3_unreachable_endpoint_is_unavailable() -> None:
    storage = S3Storage(
        endpoint_url="http://127.0.0.1:9",  # discard port: connection refused
        bucket="unreachable",
        access_key_id="testing",
        secret_access_key="testing",
        region="us-east-1",
        presign_seconds=60,
        connect_timeout=1,
        max_attempts=1,
    )
    with pytest.raises(StorageUnavailable, match=r"127\.0\.0\.1:9"):
        storage.check()
    with pytest.raises(StorageUnavailable):
        storage.put_bytes("a.bin", b"x")
    with pytest.raises(StorageUnavailable):
        storage.size("a.bin")


def test_s3_bucket_removed_behind_our_back(s3_storage: S3Storage, tmp_path: Path) -> None:
    s3_storage.put_bytes("a.bin", b"x")
    s3_storage.delete("a.bin")
    raw = boto3.client(
        "s3",
        endpoint_url=s3_storage.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    raw.delete_bucket(Bucket=s3_storage.bucket)
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")

    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        s3_storage.put_file("a.bin", src)  # boto3 wraps this one in S3UploadFailedError
    with pytest.raises(ObjectNotFound):
        s3_storage.size("a.bin")
    s3_storage.check()  # recreates the bucket
    s3_storage.put_file("a.bin", src)
    assert _read(s3_storage, "a.bin") == b"x"


def test_local_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "regular-file"
    blocker.write_bytes(b"")
    storage = LocalStorage(blocker / "objects")
    with pytest.raises(StorageUnavailable, match="not writable"):
        storage.check()


def test_local_root_is_created_on_first_write(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "objects"
    storage = LocalStorage(root)
    assert not root.exists()
    storage.put_bytes("a/b.bin", b"x")
    assert (root / "a" / "b.bin").read_bytes() == b"x"


def test_local_symlink_cannot_escape_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    root = tmp_path / "objects"
    root.mkdir()
    (root / "link").symlink_to(outside)
    storage = LocalStorage(root)

    with pytest.raises(ValueError, match="escapes"):
        storage.iter_chunks("link/secret")
    with pytest.raises(ValueError, match="escapes"):
        storage.put_bytes("link/planted", b"x")
    assert not (outside / "planted").exists()


def test_local_put_file_moves_and_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "objects")
    src = tmp_path / "upload.bin"
    src.write_bytes(b"model")

    storage.put_file("m/model.bin", src)
    storage.put_bytes("m/metrics.json", b"{}")
    storage.download_to("m/model.bin", tmp_path / "copy.bin")

    assert not src.exists()  # same filesystem: renamed, not copied
    found = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert found == ["copy.bin", "objects/m/metrics.json", "objects/m/model.bin"]


def test_local_put_file_across_filesystems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a different filesystem than tmp_path")
    src = shm / f"xai-compress-test-{uuid.uuid4().hex}"
    data = _payload(BIG)
    src.write_bytes(data)
    try:
        storage = LocalStorage(tmp_path / "objects")
        storage.put_file("m/model.bin", src)
        assert _read(storage, "m/model.bin") == data
        assert not src.exists()
        assert os.listdir(tmp_path / "objects" / "m") == ["model.bin"]
    finally:
        src.unlink(missing_ok=True)


def test_attachment_header_quotes_unsafe_names() -> None:
    header = attachment_header('a "b"\\c.bin')
    assert header == ("attachment; filename=\"a _b__c.bin\"; filename*=UTF-8''a%20%22b%22%5Cc.bin")


def test_make_storage_picks_the_configured_backend(tmp_path: Path, moto_endpoint: str) -> None:
    local = make_storage(Settings(storage_backend="local", data_dir=tmp_path))
    assert isinstance(local, LocalStorage)
    assert local.root == tmp_path / "objects"

    s3 = make_storage(
        Settings(
            storage_backend="s3",
            s3_endpoint_url=moto_endpoint,
            s3_bucket="made-by-settings",
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
            presigned_url_seconds=120,
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.presign_seconds) == ("made-by-settings", 120)
    s3.check()
