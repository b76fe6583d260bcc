"""One real embedded server for all client tests, with the example model and data on it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from xai_compress_client import Client, Dataset, Model

from compression.examples import write_examples
from tests.e2e.server import EmbeddedServer

# Small settings so a job takes seconds: few calibration samples, few latency repeats.
FAST = {"attribution": {"samples": 128}, "evaluation": {"latency_repeats": 3}}
PRUNE = [{"type": "prune_filters", "ratio": 0.5}]
# A job that runs long enough to be waited on, timed out and cancelled.
SLOW = {
    "steps": [{"type": "prune_filters", "ratio": 0.5, "iterative_steps": 20}],
    "attribution": {"samples": 1024, "batch_size": 1},
    "evaluation": {"latency_repeats": 3},
}
# Fails fast: the engine checks layer names before any work.
FAILING = {"steps": [{"type": "prune_weights", "sparsity": 0.5, "layers": ["no_such_layer"]}]}


@dataclass(frozen=True)
class Service:
    url: str
    key: str
    workdir: Path
    model_file: Path
    data_file: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="package")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("service")
    model_file, data_file = write_examples(workdir / "examples", epochs=2)
    # the webhook receivers of these tests listen on 127.0.0.1, which the default refuses
    server = EmbeddedServer(workdir, free_port(), {"WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"})
    try:
        key = (workdir / "data" / "api-key").read_text().strip()
        yield Service(server.url, key, workdir, model_file, data_file)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def client(service: Service) -> Iterator[Client]:
    with Client(service.url, service.key) as client:
        yield client


@pytest.fixture(scope="package")
def uploaded(client: Client, service: Service) -> tuple[Model, Dataset]:
    """The example model and dataset, validated by the server's worker."""
    model = client.models.upload(service.model_file, name="digits cnn")
    data = client.datasets.upload(service.data_file)
    return client.models.wait_ready(model.id, 60), client.datasets.wait_ready(data.id, 60)
