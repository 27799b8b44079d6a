"""Top-1/top-5 accuracy through `evaluate`, from the metric module shipped in the package (works offline)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction


TOP_K_ACCURACY_PATH = str(Path(__file__).parent / "metrics" / "top_k_accuracy")


def load_top_k_accuracy() -> evaluate.EvaluationModule:
    """The package's `top_k_accuracy` metric, loaded from its local folder (no Hub access).

    Kept in memory: by default `evaluate` stages predictions in a cache file under the user's cache folder, named
    after the experiment id and process index, which concurrent runs (and the ranks of a DDP run, each computing on
    the gathered predictions) would contend for; the predictions are in memory already.
    """
    return evaluate.load(TOP_K_ACCURACY_PATH, keep_in_memory=True)


def build_compute_metrics(
    metric: evaluate.EvaluationModule | None = None, top_k: tuple[int, ...] = (1, 5)
) -> Callable[[EvalPrediction], dict[str, float]]:
    """A `Trainer` `compute_metrics` reporting `accuracy` (top-1) and `top5_accuracy` from the logits."""
    metric = metric if metric is not None else load_top_k_accuracy()

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric.compute(predictions=np.asarray(logits), references=prediction.label_ids, top_k=top_k)

    return compute_metrics


__all__ = ["TOP_K_ACCURACY_PATH", "build_compute_metrics", "load_top_k_accuracy"]
