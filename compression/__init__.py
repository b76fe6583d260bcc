"""xai-compress's engine: DeepLIFT-guided compression of neural networks, as a library.

from compression import load_model, load_dataset, compress, Spec
model = load_model("model.onnx")
data = load_dataset("digits.npz", model.input_shape)
result = compress(model, data, Spec(steps=[{"type": "prune_filters", "ratio": 0.5}]))
"""

from compression.data import Dataset, load_dataset
from compression.errors import CompressionError
from compression.io import LoadedModel, export_onnx, export_pt2, load_model
from compression.pipeline import Result, compress
from compression.runtime import Runtime
from jobspec import Spec

__all__ = [
    "CompressionError",
    "Dataset",
    "LoadedModel",
    "Result",
    "Runtime",
    "Spec",
    "compress",
    "export_onnx",
    "export_pt2",
    "load_dataset",
    "load_model",
]
