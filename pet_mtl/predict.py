"""`python -m pet_mtl.predict checkpoint=<run or checkpoint dir> [data.dir=...] [split=a|b]`: write a submission.

`files={tnews: path, ...}` predicts any files instead (TSV or CLUE JSON lines); `labelled=true` also scores them.
"""
from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .cli import CONF_DIR, friendly_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@friendly_errors
def main(cfg: DictConfig) -> str:
    from .submission import EVAL_NAME, write_submission

    out = Path(cfg.output_dir) if cfg.output_dir else Path(HydraConfig.get().runtime.output_dir)
    zip_path = write_submission(cfg.checkpoint, cfg.data.dir, cfg.split, out, cfg.batch_size, cfg.precision,
                                cfg.device, cfg.trust_pickle, dict(cfg.files), cfg.labelled)
    print(f"submission: {zip_path}")
    print(f"files:      {', '.join(str(p) for p in sorted(out.glob('*_predict.json')))}")
    if cfg.labelled:
        result = json.loads((out / EVAL_NAME).read_text(encoding="utf-8"))
        print("scores:     " + ", ".join(f"{t} macro-F1 {s['macro_f1']:.4f}" for t, s in result["tasks"].items())
              + f"; mean {result['score']:.4f} ({out / EVAL_NAME})")
    return str(zip_path)


if __name__ == "__main__":
    main()
