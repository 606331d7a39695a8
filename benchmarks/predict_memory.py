"""Predict's peak memory against the size of the file it predicts: it should not grow with the rows.

    python benchmarks/predict_memory.py --out /work/runs/predict_memory [--rows 20000 200000 2000000]

Trains the demo's tiny model for two steps (nothing downloaded), writes TNEWS test files of the given sizes (the
demo's titles repeated, each row a new id), and runs `python -m pet_mtl.predict +files.tnews=<file>` on each under
GNU time, printing rows, wall seconds and the peak resident memory (maximum RSS) of the predict process.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "run"
    if not (run / "checkpoint-best").is_dir():
        subprocess.run([sys.executable, "-m", "pet_mtl.train", "train.max_steps=2", "train.progress=false",
                        "train.predict_splits=[]", f"hydra.run.dir={run}"], check=True, stdout=subprocess.DEVNULL)
    titles = [line.split("\t")[1] for line in (DEMO / "TNEWS_a.csv").read_text(encoding="utf-8").splitlines()]
    print("| rows | file MB | wall s | peak RSS MB |")
    print("|---|---|---|---|")
    for n in args.rows:
        data = args.out / f"tnews_{n}.csv"
        if not data.is_file():
            with open(data, "w", encoding="utf-8") as fh:
                for i in range(n):
                    fh.write(f"{i}\t{titles[i % len(titles)]}\n")
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "pet_mtl.predict", f"checkpoint={run}",
               f"+files.tnews={data}", f"output_dir={args.out / f'predict_{n}'}", "progress=false"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
        wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
        seconds = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
        print(f"| {n:,} | {data.stat().st_size / 2**20:.1f} | {seconds:.0f} | {rss:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
