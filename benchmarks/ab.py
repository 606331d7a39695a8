"""Two whole commands timed in turn (A B A B ...), with the ratio taken pair by pair, so a comparison holds while a
shared machine's speed drifts.

    python benchmarks/ab.py -n 5 --a "cd /tmp/before && python -m pet_mtl.train ..." --b "python -m pet_mtl.train ..."

Prints each command's wall and CPU seconds (GNU time) as min / median / max, its peak memory (the largest
process's maximum RSS), and the per-pair ratio A/B of wall time. One warm-up run of each first.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile


def once(command: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of one run, measured by GNU time around the command's shell."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name, "bash", "-c", command], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall, user, system, rss_kb = out.read().split()[-4:]
    return float(wall), float(user) + float(system), int(rss_kb) / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("-n", type=int, default=5)
    args = p.parse_args()
    once(args.a), once(args.b)  # warm-up: file caches, compiled kernels
    runs = {"A": [], "B": []}
    for _ in range(args.n):
        runs["A"].append(once(args.a))
        runs["B"].append(once(args.b))
    ratios = [a[0] / b[0] for a, b in zip(runs["A"], runs["B"])]

    def row(values):
        return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"

    print("| command | wall s (min / median / max) | CPU s | peak RSS MB |")
    print("|---|---|---|---|")
    for name in ("A", "B"):
        walls, cpus, rss = zip(*runs[name])
        print(f"| {name} | {row(walls)} | {row(cpus)} | {max(rss):.0f} |")
    print(f"| A/B wall, per pair | {row(ratios)} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
