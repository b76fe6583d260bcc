"""What a compression job does, as data: the request body of the service's jobs endpoint.

A leaf package of pydantic models only (no torch), so the API can validate job requests
without importing the engine, and the engine can read them without importing the API.

Steps run in order on the same model. Every step can name its own criterion; otherwise the
spec's criterion applies, so comparing criteria is changing one field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CriterionName = Literal["deeplift", "auto", "l1", "taylor", "random"]
Scope = Literal["global", "layer"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PruneFilters(_Strict):
    """Remove whole filters (conv) and neurons (linear); the model really gets smaller."""

    type: Literal["prune_filters"] = "prune_filters"
    ratio: float = Field(0.5, gt=0, lt=1, description="Fraction of channels to remove.")
    scope: Scope = Field(
        "layer", description="'layer': each layer loses `ratio`; 'global': ranked across layers."
    )
    layer_ratios: dict[str, float] = Field(
        default_factory=dict, description="Per-layer ratio overrides, by layer name."
    )
    protected: list[str] | None = Field(
        None, description="Layers never pruned; default: the first conv and the classifier."
    )
    round_to: int | None = Field(
        None, ge=1, le=1024, description="Keep channel counts multiples of this."
    )
    iterative_steps: int = Field(1, ge=1, le=20, description="Prune in steps, rescoring each.")
    max_layer_ratio: float = Field(
        0.95, gt=0, lt=1, description="No layer loses more than this fraction (global scope)."
    )
    criterion: CriterionName | None = None

    @model_validator(mode="after")
    def _ratios_in_range(self) -> PruneFilters:
        for name, ratio in self.layer_ratios.items():
            if not 0 < ratio < 1:
                raise ValueError(f"layer_ratios[{name!r}] must be in (0, 1)")
        return self


class PruneWeights(_Strict):
    """Zero individual weights; shapes stay, zeros are baked into the weights."""

    type: Literal["prune_weights"] = "prune_weights"
    sparsity: float = Field(0.5, gt=0, lt=1, description="Fraction of weights set to zero.")
    scope: Scope = "layer"
    layer_types: list[Literal["linear", "conv"]] = Field(default_factory=lambda: ["linear"])
    layers: list[str] | None = Field(None, description="Only these layers (default: all of type).")
    protected: list[str] = Field(default_factory=list)
    criterion: CriterionName | None = None


class ShareWeights(_Strict):
    """Weight sharing: per layer, k-means on the weights; each weight becomes one of k values."""

    type: Literal["share_weights"] = "share_weights"
    clusters: int = Field(16, ge=2, le=256, description="k, the codebook size of every layer.")
    layer_clusters: dict[str, int] = Field(
        default_factory=dict, description="Per-layer k overrides, by layer name."
    )
    layer_types: list[Literal["linear", "conv"]] = Field(default_factory=lambda: ["linear", "conv"])
    layers: list[str] | None = Field(None, description="Only these layers (default: all of type).")
    weighting: Literal["relevance", "magnitude", "uniform"] = Field(
        "uniform",
        description=(
            "k-means sample weights: the criterion's per-weight scores, |w|, or none (the "
            "default: plain k-means beat relevance weighting on both benchmark halves, "
            "docs/deeplift.md)."
        ),
    )
    criterion: CriterionName | None = None

    @model_validator(mode="after")
    def _clusters_in_range(self) -> ShareWeights:
        for name, k in self.layer_clusters.items():
            if not 2 <= k <= 256:
                raise ValueError(f"layer_clusters[{name!r}] must be in [2, 256]")
        return self


class QuantizeMixed(_Strict):
    """Integer mixed precision: one bit width per layer under an average-bit budget."""

    type: Literal["quantize_mixed"] = "quantize_mixed"
    average_bits: float = Field(
        4.0, ge=1, le=16, description="Budget: mean bits per weight, weighted by parameter count."
    )
    candidate_bits: list[int] = Field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    layer_types: list[Literal["linear", "conv"]] = Field(default_factory=lambda: ["linear", "conv"])
    layers: list[str] | None = None
    allocation: Literal["relevance", "magnitude", "uniform"] = Field(
        "relevance",
        description="Weight each layer's quantization error by the criterion's per-weight "
        "scores, by |w|, or equally; 'uniform' with one candidate is plain uniform bits.",
    )
    criterion: CriterionName | None = None

    @model_validator(mode="after")
    def _candidates(self) -> QuantizeMixed:
        if not self.candidate_bits or any(not 2 <= b <= 16 for b in self.candidate_bits):
            raise ValueError("candidate_bits must be non-empty, each in [2, 16]")
        if self.average_bits < min(self.candidate_bits):
            raise ValueError("average_bits is below the smallest candidate bit width")
        return self


class FineTune(_Strict):
    """Short training on the uploaded data that keeps zeros zero and shared weights shared."""

    type: Literal["finetune"] = "finetune"
    epochs: int = Field(2, ge=1, le=100)
    lr: float = Field(1e-3, gt=0, le=1)
    batch_size: int = Field(64, ge=1, le=4096)


class Int8Runtime(_Strict):
    """Also deliver ``model.int8.onnx``: weights and activations int8 (QDQ), calibrated on the
    job's calibration data with onnxruntime's quantization tools, for fast CPU inference in
    onnxruntime. The engine's model is unchanged; this is always the last step."""

    type: Literal["int8_runtime"] = "int8_runtime"
    calibration_samples: int = Field(
        256, ge=1, le=100000, description="Calibration samples that set activation ranges."
    )
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="How activation ranges are chosen from the calibration runs."
    )
    per_channel: bool = Field(True, description="One weight scale per output channel.")
    reduce_range: bool = Field(
        True,
        description="7-bit weights: avoids int16 saturation of u8 x s8 products on CPUs "
        "without VNNI (most AVX2 machines) at a small accuracy cost.",
    )


Step = Annotated[
    PruneFilters | PruneWeights | ShareWeights | QuantizeMixed | FineTune | Int8Runtime,
    Field(discriminator="type"),
]


class AttributionSettings(_Strict):
    samples: int = Field(
        512, ge=1, le=1_000_000, description="Calibration samples used to score importance."
    )
    batch_size: int = Field(128, ge=1, le=4096)
    target: Literal["label", "predicted"] = Field(
        "label", description="Explain the true class or the predicted one."
    )
    baseline: Literal["zeros", "mean", "blur"] = Field(
        "zeros", description="DeepLIFT reference input."
    )
    deeplift_target: Literal["logit", "margin", "log_softmax"] = Field(
        "logit", description="What DeepLIFT explains: the class logit, its margin, or log p."
    )
    explained_classes: int = Field(
        1,
        ge=1,
        le=16,
        description="DeepLIFT explains the target class and, above 1, also this many minus one "
        "of its strongest competing logits, adding up their relevance (one pass each).",
    )
    channel_score: Literal["relevance", "net", "ablation", "relevance_x_magnitude"] = Field(
        "relevance", description="How a filter's relevance map becomes its score."
    )
    weight_score: Literal["relevance", "relevance_x_magnitude"] = Field(
        "relevance_x_magnitude", description="How a single weight's relevance becomes its score."
    )
    reattribute: bool = Field(
        False,
        description="Recompute relevance after every step that changed the model; by default "
        "scores are reused while the layer shapes still match.",
    )


class EvaluationSettings(_Strict):
    calibration_fraction: float = Field(
        0.5, gt=0, lt=1, description="Share of the data held for scoring when no eval set is given."
    )
    batch_size: int = Field(256, ge=1, le=8192)
    latency_batch: int = Field(1, ge=1, le=1024)
    latency_repeats: int = Field(30, ge=3, le=1000)


class Normalization(_Strict):
    """Per-channel ``(x - mean) / std`` on pixels scaled to [0, 1], as torchvision does."""

    mean: list[float] = Field(min_length=1, max_length=4)
    std: list[float] = Field(min_length=1, max_length=4)

    @model_validator(mode="after")
    def _matching(self) -> Normalization:
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std need one value per channel each")
        if any(value <= 0 for value in self.std):
            raise ValueError("every std must be positive")
        return self


class Preprocessing(_Strict):
    """How images become model input: image archives (PNG/JPEG/BMP folders) and ``.npz`` of
    uint8 images. Pixels are scaled to [0, 1], then normalized. Float ``.npz`` samples are
    used as they are (already preprocessed), so these options must stay at their defaults
    for them."""

    normalize: Literal["none", "imagenet"] | Normalization = Field(
        "none",
        description="'imagenet' is mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); or "
        "give {mean, std} per channel.",
    )
    resize: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Resize the shorter side to this many pixels, then center-crop to the "
        "model's input (ImageNet: 256 for a 224 model). Default: resize straight to the input.",
    )
    channel_order: Literal["rgb", "bgr"] = Field(
        "rgb", description="The channel order the model expects (images are read as RGB)."
    )

    def is_default(self) -> bool:
        return self == Preprocessing()


class Sweep(_Strict):
    """Run the pipeline once per value of one step's setting; attribution is computed once."""

    step: int = Field(0, ge=0, le=15, description="Index of the step whose setting varies.")
    parameter: Literal["ratio", "sparsity", "clusters", "average_bits"]
    values: list[float] = Field(min_length=1, max_length=32)
    max_accuracy_drop: float = Field(
        0.01, ge=0, le=1,
        description="The chosen point is the smallest packed model whose accuracy is within "
        "this of the uncompressed model's; if none is, the most accurate point.",
    )  # fmt: skip


class Spec(_Strict):
    steps: list[Step] = Field(min_length=1, max_length=16)
    criterion: CriterionName = "deeplift"
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    sweep: Sweep | None = None
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds splits, k-means and training.")
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)

    @model_validator(mode="after")
    def _int8_runtime_last(self) -> Spec:
        positions = [i for i, step in enumerate(self.steps) if isinstance(step, Int8Runtime)]
        if positions and positions != [len(self.steps) - 1]:
            raise ValueError("int8_runtime may appear once, as the last step")
        if positions and len(self.steps) == 1:
            raise ValueError("int8_runtime needs a compression step before it")
        return self

    @property
    def int8_runtime(self) -> Int8Runtime | None:
        last = self.steps[-1]
        return last if isinstance(last, Int8Runtime) else None

    @model_validator(mode="after")
    def _sweep_fits(self) -> Spec:
        if self.sweep is None:
            return self
        if self.sweep.step >= len(self.steps):
            raise ValueError(f"sweep.step {self.sweep.step} is not a step index")
        for value in self.sweep.values:
            self.with_sweep_value(value)  # each point must itself be a valid spec
        return self

    def with_sweep_value(self, value: float) -> Spec:
        """The spec of one sweep point: the swept step with ``parameter`` set to ``value``."""
        assert self.sweep is not None
        step = self.steps[self.sweep.step]
        if self.sweep.parameter not in type(step).model_fields:
            raise ValueError(f"step {self.sweep.step} ({step.type}) has no {self.sweep.parameter}")
        number = int(value) if self.sweep.parameter == "clusters" else value
        changed = type(step).model_validate({**step.model_dump(), self.sweep.parameter: number})
        steps = [*self.steps[: self.sweep.step], changed, *self.steps[self.sweep.step + 1 :]]
        return self.model_copy(update={"steps": steps, "sweep": None})
