"""Macro-F1 and accuracy as a local `evaluate` module (the hub cannot be reached, so we ship our own).

Load with `evaluate.load(<this folder>)`; `pet_mtl.metrics.classification_scores` does that once and caches it.
Macro-F1 follows scikit-learn's `f1_score(average="macro")`: the unweighted mean of per-class F1 over the
classes that occur in the references or the predictions (or over `labels` when given), a class with no
true and no predicted positives counting 0. With `num_classes`, it also returns every class's precision, recall,
F1 and support, and the confusion matrix (rows: gold class, columns: predicted class), absent classes included:
macro-F1 is decided by the rare classes, so they must be visible.
"""
import datasets
import evaluate

_DESCRIPTION = "Macro-averaged F1 and accuracy for single-label classification (the Tianchi competition score)."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted class indices.
    references (list of int): gold class indices.
    labels (list of int, optional): the classes to average over; default: those seen in either list.
    num_classes (int, optional): report per-class scores and the confusion matrix for classes 0..num_classes-1.
Returns:
    macro_f1 (float), accuracy (float), per_class_f1 (dict class -> float); with num_classes also
    per_class (list of {precision, recall, f1, support}, one per class) and confusion (list of lists)
"""


def _f1(tp: int, fp: int, fn: int) -> float:
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, labels=None, num_classes=None):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if not references:
            raise ValueError("no references to score")
        size = max([*predictions, *references, (num_classes or 0) - 1]) + 1
        confusion = [[0] * size for _ in range(size)]
        for p, r in zip(predictions, references):
            confusion[r][p] += 1
        tp = [confusion[c][c] for c in range(size)]
        predicted = [sum(confusion[r][c] for r in range(size)) for c in range(size)]
        support = [sum(row) for row in confusion]
        classes = sorted(set(references) | set(predictions)) if labels is None else list(labels)
        per_class_f1 = {int(c): _f1(tp[c], predicted[c] - tp[c], support[c] - tp[c]) for c in classes}
        out = {
            "macro_f1": sum(per_class_f1.values()) / len(per_class_f1),
            "accuracy": sum(tp) / len(references),
            "per_class_f1": per_class_f1,
        }
        if num_classes:
            out["per_class"] = [{"precision": tp[c] / predicted[c] if predicted[c] else 0.0,
                                 "recall": tp[c] / support[c] if support[c] else 0.0,
                                 "f1": _f1(tp[c], predicted[c] - tp[c], support[c] - tp[c]), "support": support[c]}
                                for c in range(num_classes)]
            out["confusion"] = [row[:num_classes] for row in confusion[:num_classes]]
        return out
