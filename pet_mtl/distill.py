"""`python -m pet_mtl.distill teachers=[run1,run2,run3] data.unlabelled.tnews=[a,b] ... [method=heads] [train overrides]`

Distillation (pet_mtl/training/distillation.py): the teachers label the unlabelled rows with their averaged, softened
distributions, and one student (any method, the run's `method`) trains on the gold rows plus the soft rows. It is
`python -m pet_mtl.train` with `distill.teachers` set (`teachers=` is short for it): the same run directory,
checkpoints, resume, evaluation and submission, and the student is one model.
"""
from __future__ import annotations

import sys

from pet_mtl.cli import check_training_command_line


def main(argv: list[str]) -> list[str]:
    """The command line with `teachers=` spelled `distill.teachers=`; refused without teachers."""
    argv = [f"distill.{a}" if a.startswith(("teachers=", "temperature=")) else a for a in argv]
    if not any(a.startswith("distill.teachers=") for a in argv) and not any(a in ("--help", "-h", "--cfg") for a in argv):
        print("error: python -m pet_mtl.distill needs teachers=[<run dir or checkpoint>,...] (the models whose averaged "
              "distributions label the unlabelled rows) and data.unlabelled.<task>=[...] (the rows)", file=sys.stderr)
        sys.exit(2)
    return argv


if __name__ == "__main__":
    sys.argv[1:] = main(sys.argv[1:])
    check_training_command_line(sys.argv[1:])
    from pet_mtl.train import main as train_main

    train_main()
