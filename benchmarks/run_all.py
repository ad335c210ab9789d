"""Run every benchmark, print their figures, and record them in ``benchmarks/README.md``.

    python benchmarks/run_all.py            # all of them (tens of minutes on 2 cores)
    python benchmarks/run_all.py --only data split
    python benchmarks/run_all.py --write    # also replace the "Latest figures" section

Each ``bench_*.py`` prints its figures and the ratio against its reference measured in the same
run; this script only gathers their output, with the date and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- latest figures: begin -->", "<!-- latest figures: end -->"
# name -> extra arguments (kept modest so the whole set fits a 2-core machine)
BENCHMARKS = {"data": [], "split": [], "grid": [], "models": [], "gpu": []}  # gpu: skips without CUDA


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def run_one(name: str, extra: list[str]) -> tuple[str, float, int]:
    script = HERE / f"bench_{name}.py"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *extra], cwd=HERE.parent, capture_output=True, text=True)
    out = proc.stdout.strip()
    if proc.returncode:
        out += f"\n[exit {proc.returncode}] " + proc.stderr.strip()[-2000:]
    return out, time.perf_counter() - t0, proc.returncode


def write_section(blocks: dict[str, str]) -> None:
    """Replace the recorded blocks of the benchmarks just run; keep the others."""
    readme = HERE / "README.md"
    text = readme.read_text() if readme.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    old, tail = rest.split(END, 1)
    recorded = {}
    for chunk in old.split("\n### ")[1:]:
        recorded[chunk.split(".py", 1)[0]] = "### " + chunk.strip()
    recorded.update(blocks)
    body = "\n\n".join(recorded[k] for k in sorted(recorded, key=lambda k: list(BENCHMARKS).index(k.removeprefix("bench_"))))
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    tmp.replace(readme)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    p.add_argument("--write", action="store_true", help="record the figures in benchmarks/README.md")
    args = p.parse_args()
    names = args.only or list(BENCHMARKS)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    blocks: dict[str, str] = {}
    failed = 0
    for name in names:
        print(f"== bench_{name}.py", flush=True)
        out, seconds, code = run_one(name, BENCHMARKS[name])
        failed += code != 0
        print(out, f"\n({seconds:.0f} s)\n", flush=True)
        if out.startswith("skipped:"):  # nothing measured here: keep the figures recorded elsewhere
            continue
        blocks[f"bench_{name}"] = (f"### bench_{name}.py\n\nMeasured {stamp} on {where}; {seconds:.0f} s.\n\n"
                                   f"```\n{out}\n```")
    if args.write:
        write_section(blocks)
        print(f"recorded in {HERE / 'README.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
