"""pet_mtl: Pattern-Exploiting Training for multi-task Chinese text classification.

Data flows one way: files -> Example (data, regimes) -> cloze text (patterns) or plain text -> Feature (features,
methods) -> batch -> label scores (a method's Scorer) -> metrics / submission. Entry points: `python -m pet_mtl.train`,
`python -m pet_mtl.predict`, `python -m pet_mtl.report`.
"""
__version__ = "0.1.0"

__all__ = ["Classifier"]


def __getattr__(name: str):
    """`pet_mtl.Classifier` without importing torch and transformers for every `python -m pet_mtl.<command>`."""
    if name == "Classifier":
        from pet_mtl.inference.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'pet_mtl' has no attribute {name!r}")
