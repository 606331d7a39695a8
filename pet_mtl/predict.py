"""`python -m pet_mtl.predict checkpoint=<run or checkpoint dir> [data.dir=...] [split=a|b]`: write a submission."""
from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from .cli import CONF_DIR, friendly_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@friendly_errors
def main(cfg: DictConfig) -> str:
    from .submission import write_submission

    out = Path(cfg.output_dir) if cfg.output_dir else Path(HydraConfig.get().runtime.output_dir)
    zip_path = write_submission(cfg.checkpoint, cfg.data.dir, cfg.split, out, cfg.batch_size, cfg.precision,
                                cfg.device, cfg.trust_pickle)
    print(f"submission: {zip_path}")
    print(f"files:      {', '.join(str(p) for p in sorted(out.glob('*_predict.json')))}")
    return str(zip_path)


if __name__ == "__main__":
    main()
