"""The SDK stays in line with the server's OpenAPI document: every request the SDK makes maps
to a documented operation, and every JSON body it sends validates against that operation's
request schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from xai_compress_client import Client, Dataset, Model

from tests.client.conftest import FAST, PRUNE, Service


def _operations(openapi: dict) -> list[tuple[str, re.Pattern[str], dict]]:
    found = []
    for template, item in openapi["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$")
        for method, operation in item.items():
            found.append((method.upper(), pattern, operation))
    return found


def test_every_sdk_request_is_a_documented_operation_with_a_valid_body(
    service: Service, uploaded: tuple[Model, Dataset], tmp_path: Path
) -> None:
    openapi = httpx.get(f"{service.url}/openapi.json").json()
    operations = _operations(openapi)
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(openapi, default_specification=DRAFT202012)
    )
    sent: list[httpx.Request] = []
    model, dataset = uploaded
    with Client(service.url, service.key) as client:
        client._transport._http.event_hooks["request"].append(sent.append)
        client.models.get(model.id)
        extra = client.models.upload(service.model_file, name="contract")
        client.models.delete(extra.id)
        list(client.models.list(limit=2))
        list(client.datasets.list())
        client.datasets.get(dataset.id)
        job = client.jobs.create(model, dataset, steps=PRUNE, metadata={"contract": True}, **FAST)
        job.wait(timeout=120, progress=False)
        list(job.events())
        job.download(tmp_path)
        job.cancel()
        list(client.jobs.list(status="succeeded"))
        hook = client.webhooks.create("http://127.0.0.1:9/hook", events=["job.failed"])
        list(client.webhooks.list())
        list(client.webhooks.deliveries(hook.id))
        client.webhooks.delete(hook.id)

    used = set()
    for request in sent:
        if (
            request.url.host != httpx.URL(service.url).host
            or request.url.port != httpx.URL(service.url).port
        ):
            continue  # a presigned storage URL is not part of the API
        matches = [
            operation
            for method, pattern, operation in operations
            if method == request.method and pattern.match(request.url.path)
        ]
        assert matches, f"{request.method} {request.url.path} is not in the OpenAPI document"
        operation = matches[0]
        used.add(operation["operationId"])
        if request.headers.get("content-type", "").startswith("application/json"):
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            validator = jsonschema.Draft202012Validator(
                {"$ref": "urn:openapi#" + schema["$ref"].removeprefix("#")}
                if "$ref" in schema
                else schema,
                registry=registry,
            )
            validator.validate(json.loads(request.content))
    assert {
        "createModel", "deleteModel", "getModel", "listModels", "listDatasets", "getDataset",
        "createJob", "getJob",
        "listJobEvents", "listJobArtifacts", "downloadJobArtifact", "cancelJob", "listJobs",
        "createWebhook", "listWebhooks", "listDeliveries", "deleteWebhook",
    } <= used  # fmt: skip
