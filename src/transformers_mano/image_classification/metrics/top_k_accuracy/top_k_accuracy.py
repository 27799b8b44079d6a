"""Top-k accuracy of classification logits, as an `evaluate` metric module that loads from a local path.

`evaluate.load("accuracy")` fetches its script from the Hub; this module ships inside transformers-mano, so
`evaluate.load(transformers_mano.image_classification.TOP_K_ACCURACY_PATH)` works offline. It imports nothing from the package,
because `evaluate` copies the file into its own module cache before importing it.
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
Top-k accuracy: the fraction of examples whose reference label is among the k highest-scoring classes.
`accuracy` is top-1; `top{k}_accuracy` is reported for every other k in `top_k` (default (1, 5)) that is smaller
than the number of classes (with k >= the number of classes it would be 1 by construction).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): scores (logits or probabilities), one row of num_classes per example.
    references (`list` of `int`): the true class of each example.
    top_k (`tuple` of `int`, *optional*, defaults to (1, 5)): the k values to report.
Returns:
    accuracy (`float`): top-1 accuracy in [0, 1].
    top{k}_accuracy (`float`): top-k accuracy for each other k.
Examples:
    >>> metric = evaluate.load("path/to/top_k_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 0], top_k=(1, 2))
    {'accuracy': 0.5, 'top2_accuracy': 1.0}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    """Top-1 and top-k accuracy from score rows."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, top_k=(1, 5)) -> dict:
        scores = np.asarray(predictions, dtype=np.float32)  # N, num_classes
        labels = np.asarray(references, dtype=np.int64)  # N
        if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
            raise ValueError(f"predictions must be (N, num_classes) scores for N references, got {scores.shape}")
        num_classes = scores.shape[1]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"references must be class ids in [0, {num_classes}), got {labels.min()}..{labels.max()}")
        # Rank of the true class among the scores, ties broken towards the lower class id as argmax breaks them.
        true_scores = scores[np.arange(len(labels)), labels][:, None]  # N, 1
        lower_id = np.arange(num_classes)[None, :] < labels[:, None]  # N, num_classes
        rank = ((scores > true_scores) | ((scores == true_scores) & lower_id)).sum(axis=1)  # N
        results = {"accuracy": float((rank < 1).mean())}
        for k in sorted(set(top_k)):
            if 1 < k < num_classes:
                results[f"top{k}_accuracy"] = float((rank < k).mean())
        return results
