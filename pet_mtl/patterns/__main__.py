"""`python -m pet_mtl.patterns {check,preview,zero-shot,search-verbalizers} --help`: the pattern workbench."""
import sys

from ..workbench import main

sys.exit(main())
