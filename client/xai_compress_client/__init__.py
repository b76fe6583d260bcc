"""Python SDK for xai-compress: upload models and data, run compression jobs, fetch results.

Example::

    from xai_compress_client import Client

    with Client() as client:  # XAI_COMPRESS_URL, XAI_COMPRESS_API_KEY
        model = client.models.wait_ready(client.models.upload("model.pt2").id)
        data = client.datasets.wait_ready(client.datasets.upload("train.npz").id)
        job = client.jobs.create(model, data, steps=[{"type": "prune_filters", "ratio": 0.5}])
        job.wait()
        job.download("out/")
"""

from xai_compress_client.client import Client
from xai_compress_client.errors import (
    AuthenticationError,
    ConflictError,
    IntegrityError,
    JobCancelled,
    JobFailed,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    TransportError,
    UploadInvalid,
    ValidationError,
    WaitTimeout,
    WebhookVerificationError,
    XaiCompressError,
)
from xai_compress_client.jobs import Job
from xai_compress_client.objects import (
    Artifact,
    Dataset,
    DeliveryAttempt,
    ErrorInfo,
    Event,
    Model,
    Upload,
    WebhookDelivery,
    WebhookEndpoint,
)

__all__ = [
    "Artifact",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "Dataset",
    "DeliveryAttempt",
    "ErrorInfo",
    "Event",
    "IntegrityError",
    "Job",
    "JobCancelled",
    "JobFailed",
    "Model",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "ServerError",
    "TransportError",
    "Upload",
    "UploadInvalid",
    "ValidationError",
    "WaitTimeout",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookVerificationError",
    "XaiCompressError",
]
