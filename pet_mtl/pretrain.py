"""`python -m pet_mtl.pretrain model.path=<masked LM> out_dir=<dir> text=[...]`: continued masked-LM pretraining.

out_dir becomes a Hugging Face masked-LM directory that `python -m pet_mtl.train model.path=<out_dir>` uses as it
is (see pretraining/pretrainer.py for what else it holds, data/corpus.py for the text sources, data/packing.py for
packing and masking).
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pet_mtl.cli import CONF_DIR, check_overrides, friendly_errors, record_resume, resumed_argv


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pretrain")
@friendly_errors
def main(cfg: DictConfig) -> float:
    from pet_mtl.pretraining.pretrainer import Pretrainer

    pretrainer = Pretrainer(cfg, Path(cfg.out_dir))
    record_resume(pretrainer, pretrainer.out_dir)
    summary = pretrainer.fit()
    if summary["is_main"]:
        first, last = summary["first"], summary["last"]
        print(f"masked LM:     {summary['out_dir']}")
        print(f"held-out pseudo-perplexity: {first['pseudo_perplexity']:.3f} (step {first['step']}) -> "
              f"{last['pseudo_perplexity']:.3f} (step {last['step']})")
        print(f"use it:        python -m pet_mtl.train model.path={summary['out_dir']}")
    return summary["last"]["pseudo_perplexity"]


if __name__ == "__main__":
    from pet_mtl.core.config import PretrainConfig

    sys.argv[1:] = resumed_argv(sys.argv[1:], "out_dir")
    check_overrides(sys.argv[1:], PretrainConfig, set(), {"text"})
    main()
