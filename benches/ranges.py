#!/usr/bin/env python3
"""The range of each figure over several runs of benches/bench.py, as one Markdown table.

    for i in 1 2 3; do python3 benches/bench.py; done
    python3 benches/ranges.py bench-results/*-full.json     # or name the runs' files

On this 2-core machine one run differs from the next by up to ±25%, so a single run's
figure says little; the README's performance table is this script's output over three
full runs. Per backend and scenario: req/s (2xx only), p50 and p99 in ms, and the fraction
of the machine's crypto bound (measured by each run itself), each as min–max.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def span(values: list[float], fmt: str) -> str:
    low, high = min(values), max(values)
    if fmt.format(low) == fmt.format(high):
        return fmt.format(low)
    return f"{fmt.format(low)}–{fmt.format(high)}"


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    runs = [json.loads(Path(p).read_text()) for p in paths]
    figures: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    facts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: list[tuple[str, str]] = []
    for run in runs:
        for backend in run["backends"]:
            name = backend["facts"]["backend"]
            for key in ("idle_rss_kib", "peak_rss_kib", "startup_existing_median_ms"):
                if backend["facts"].get(key) is not None:
                    facts[name][key].append(backend["facts"][key])
            for r in backend["results"]:
                key = (r["backend"], r["scenario"])
                if key not in order:
                    order.append(key)
                f = figures[key]
                f["rps"].append(r["ok_rps"])
                f["p50"].append(r["p50_ms"])
                f["p99"].append(r["p99_ms"])
                if r.get("bound"):
                    f["bound"].append(100.0 * r["ok_rps"] / r["bound"])
    print(f"{len(runs)} runs: " + ", ".join(Path(p).name for p in paths) + "\n")
    print("| backend | scenario | req/s | p50 ms | p99 ms | of bound |")
    print("|---|---|---:|---:|---:|---:|")
    for key in order:
        f = figures[key]
        bound = span(f["bound"], "{:.0f}") + " %" if f["bound"] else "—"
        print(f"| {key[0]} | {key[1]} | {span(f['rps'], '{:,.0f}')} | {span(f['p50'], '{:.1f}')} | "
              f"{span(f['p99'], '{:.1f}')} | {bound} |")
    print("\n| backend | idle RSS MiB | peak RSS MiB | start-up ms (median) |")
    print("|---|---:|---:|---:|")
    for name, f in facts.items():
        mib = [v / 1024 for v in f["idle_rss_kib"]], [v / 1024 for v in f["peak_rss_kib"]]
        print(f"| {name} | {span(mib[0], '{:.1f}')} | {span(mib[1], '{:.1f}')} | "
              f"{span(f['startup_existing_median_ms'], '{:.0f}')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
