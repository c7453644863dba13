"""How fast the CLI answers: ``probe --help``, every ``probe <command> --help`` and ``probe --version``.

Each is a fresh process (what a user waits for), repeated and alternated, median reported; the
figure that matters is the wall time against the 1 s budget. ``--quick`` runs two commands once.

    python bench/bench_cli.py                 # figures -> docs/benchmarks.md (section "cli")
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import date

from _shared import REPO, cpu_name, write_section

COMMANDS = ("models", "extract", "curve", "linear", "knn", "fewshot", "finetune", "report", "results", "demo", "run")


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (median reported)")
    parser.add_argument("--quick", action="store_true", help="two commands once, no docs written")
    args = parser.parse_args()
    cases = [["--help"], ["--version"], *([c, "--help"] for c in COMMANDS)]
    if args.quick:
        cases, args.repeats = cases[:2], 1
    times: dict[str, list[float]] = {" ".join(c): [] for c in cases}
    for _ in range(args.repeats):  # alternate the commands within each repeat
        for case in cases:
            times[" ".join(case)].append(wall(case))
    rows = [(name, statistics.median(ts), max(ts)) for name, ts in times.items()]
    for name, med, worst in rows:
        print(f"probe {name:<18} median {med:.2f} s  max {worst:.2f} s")
    if args.quick:
        return
    table = "\n".join(f"| `probe {name}` | {med:.2f} | {worst:.2f} |" for name, med, worst in rows)
    section = (
        "<!-- bench:cli:start -->\n## CLI response time (bench/bench_cli.py)\n\n"
        f"`python bench/bench_cli.py --repeats {args.repeats}` on {cpu_name()}, {date.today()}: fresh processes,"
        " commands alternated within each repeat (state the machine load when you commit figures)."
        " Budget: 1 s. The CLI imports the library (torch, timm,"
        " transformers, numpy) only inside the command that needs it, so help and --version load typer alone.\n\n"
        f"| command | median s | max s |\n|---|---|---|\n{table}\n<!-- bench:cli:end -->"
    )
    write_section(REPO / "docs" / "benchmarks.md", "cli", section)


if __name__ == "__main__":
    main()
