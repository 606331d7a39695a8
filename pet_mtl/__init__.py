"""pet_mtl: Pattern-Exploiting Training for multi-task Chinese text classification.

Data flows one way: files -> Example (data) -> cloze text (patterns) -> Feature (features) -> batch ->
ClozeModel scores (model) -> metrics / submission. Entry points: `python -m pet_mtl.train`, `python -m pet_mtl.predict`.
"""
__version__ = "0.1.0"
