"""Macro-F1 and accuracy as a local `evaluate` module (the hub cannot be reached, so we ship our own).

Load with `evaluate.load(<this folder>)`; `pet_mtl.metrics.compute` does that once and caches it.
Macro-F1 follows scikit-learn's `f1_score(average="macro")`: the unweighted mean of per-class F1 over the
classes that occur in the references or the predictions (or over `labels` when given), a class with no
true and no predicted positives counting 0.
"""
import datasets
import evaluate

_DESCRIPTION = "Macro-averaged F1 and accuracy for single-label classification (the Tianchi competition score)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class indices.
    references (list of int): gold class indices.
    labels (list of int, optional): the classes to average over; default: those seen in either list.
Returns:
    macro_f1 (float), accuracy (float), per_class_f1 (dict class -> float)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if not references:
            raise ValueError("no references to score")
        classes = sorted(set(references) | set(predictions)) if labels is None else list(labels)
        per_class = {}
        for c in classes:
            tp = sum(1 for p, r in zip(predictions, references) if p == c and r == c)
            fp = sum(1 for p, r in zip(predictions, references) if p == c and r != c)
            fn = sum(1 for p, r in zip(predictions, references) if p != c and r == c)
            per_class[int(c)] = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
        correct = sum(1 for p, r in zip(predictions, references) if p == r)
        return {
            "macro_f1": sum(per_class.values()) / len(per_class),
            "accuracy": correct / len(references),
            "per_class_f1": per_class,
        }
