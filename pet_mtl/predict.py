"""`python -m pet_mtl.predict checkpoint=<run or checkpoint dir> [data.dir=...] [split=a|b]`: write a submission.

`+files.tnews=<path> [+files.ocnli=...]` predicts any files instead (TSV or CLUE JSON lines); `labelled=true` also scores them.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from pet_mtl.cli import CONF_DIR, check_overrides, friendly_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@friendly_errors
def main(cfg: DictConfig) -> str:
    import torch

    from pet_mtl.core.config import PREDICT_RANGES
    from pet_mtl.core.validate import check_ranges
    from pet_mtl.inference.submission import (
        EVAL_NAME,
        default_output_dir,
        write_submission,
    )

    check_ranges(cfg, PREDICT_RANGES)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg.checkpoint, cfg.split, bool(cfg.files))
    result = write_submission(cfg.checkpoint, cfg.data.dir, cfg.split, out, cfg.batch_size, cfg.precision,
                              cfg.device, cfg.trust_pickle, dict(cfg.files), cfg.labelled, cfg.strict, cfg.progress,
                              cfg.save_scores, cfg.calibrate, cfg.base_model)
    if result.suffix == ".zip":
        print(f"submission: {result}")
    else:
        print(f"predictions: {out} (no submit.zip: not every task of the checkpoint was predicted)")
    print(f"files:      {', '.join(str(p) for p in sorted(out.glob('*_predict.json')))}")
    if cfg.labelled:
        scored = json.loads((out / EVAL_NAME).read_text(encoding="utf-8"))
        print("scores:     " + ", ".join(f"{t} macro-F1 {s['macro_f1']:.4f}" for t, s in scored["tasks"].items())
              + f"; mean {scored['score']:.4f} ({out / EVAL_NAME})")
    return str(result)


if __name__ == "__main__":
    from pet_mtl.core.config import PredictConfig

    check_overrides(sys.argv[1:], PredictConfig, set(), {"files"})
    main()
