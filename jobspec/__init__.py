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
    model_config = ConfigDict(extra="forbid")


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
    round_to: int | None = Field(None, ge=1, description="Keep channel counts multiples of this.")
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


Step = Annotated[PruneFilters | PruneWeights, Field(discriminator="type")]


class AttributionSettings(_Strict):
    samples: int = Field(512, ge=1, description="Calibration samples used to score importance.")
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
    channel_score: Literal["relevance", "net", "ablation", "relevance_x_magnitude"] = Field(
        "relevance", description="How a filter's relevance map becomes its score."
    )
    weight_score: Literal["relevance", "relevance_x_magnitude"] = Field(
        "relevance_x_magnitude", description="How a single weight's relevance becomes its score."
    )


class EvaluationSettings(_Strict):
    calibration_fraction: float = Field(
        0.5, gt=0, lt=1, description="Share of the data held for scoring when no eval set is given."
    )
    batch_size: int = Field(256, ge=1, le=8192)
    latency_batch: int = Field(1, ge=1, le=1024)
    latency_repeats: int = Field(30, ge=3, le=1000)


class Spec(_Strict):
    steps: list[Step] = Field(min_length=1, max_length=16)
    criterion: CriterionName = "deeplift"
    attribution: AttributionSettings = Field(default_factory=AttributionSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    seed: int = Field(0, ge=0)
