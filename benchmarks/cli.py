"""`python -m benchmarks`: per source and per latency, start the emulator in its own process and
measure the naive baseline, our full load, a no-op rerun and a rerun after 1% of the tags moved
and 1% new images; print a table and write JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from .emulator_process import EmulatorProcess, InventorySpec
from .measure import measure
from .sources import BENCH_SOURCES, BenchSource

log = logging.getLogger("registry_etl.bench")

RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")

# the targets (issue 7)
TARGET_FULL_VS_BASELINE = 1.5  # no latency
TARGET_FULL_VS_BASELINE_LATENCY = 0.25  # with injected latency
TARGET_IMAGES_PER_S = 10_000
TARGET_NOOP_SHARE = 0.10
TARGET_RSS_MB = 1024


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--sources", default=",".join(BENCH_SOURCES), help=f"comma list of: {', '.join(BENCH_SOURCES)}")
    parser.add_argument("--images", type=int, default=200_000, help="images pushed in the generated inventory")
    parser.add_argument("--repositories", type=int, default=2_000)
    parser.add_argument("--layers", type=int, default=5, help="layers per image")
    parser.add_argument("--tags", type=int, default=2, help="tags per image")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", default="0", help="injected latency per request; a comma list runs each")
    parser.add_argument("--change-percent", type=float, default=1.0, help="tags moved and images pushed before the changed rerun")
    parser.add_argument("--skip-baseline", action="store_true", help="only our loads (no ratios)")
    parser.add_argument("--json", help="where to write the results (default benchmarks/results/<time>.json)")
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB files (printed)")
    parser.add_argument("--report", metavar="JSON", help="measure nothing: print the table and the targets of a results file written before")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.report:
        return report(args.report)
    names = [n.strip() for n in args.sources.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCH_SOURCES]
    if unknown:
        print(f"error: no benchmark for {', '.join(unknown)}; known: {', '.join(BENCH_SOURCES)}", file=sys.stderr)
        return 2
    latencies = [float(x) for x in args.latency_ms.split(",") if x.strip()]
    runs = []
    for name in names:
        for latency in latencies:
            runs.append(bench_source(BENCH_SOURCES[name], args, latency))
    document = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
        "options": vars(args),
        "runs": runs,
    }
    path = args.json or os.path.join(RESULTS_DIR, datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(document, handle, indent=2, default=str)
    print(render(runs))
    print(f"\nresults: {path}")
    failed = [p for run in runs for p in run["phases"].values() if not p.get("ok")]
    return 1 if failed else 0


def report(path: str) -> int:
    """Print a results file again, its targets checked by this version's `checks`."""
    with open(path) as handle:
        document = json.load(handle)
    for run in document["runs"]:
        source = BENCH_SOURCES.get(run["source"]) or BenchSource(run["source"], (), None)
        run["checks"] = checks(run, replace(source, detail_operations=tuple(run.get("detail_operations", source.detail_operations))))
    print(f"{path}: commit {document.get('commit')}, started {document.get('started_at')}, machine {document.get('machine')}")
    print(render(document["runs"]))
    return 0


def bench_source(source: BenchSource, args: argparse.Namespace, latency_ms: float) -> Dict[str, Any]:
    spec = InventorySpec(source.registries, args.repositories, args.images, args.layers, args.tags, args.seed)
    workdir = tempfile.mkdtemp(prefix=f"bench-{source.name}-")
    run: Dict[str, Any] = {"source": source.name, "latency_ms": latency_ms, "workdir": workdir, "phases": {}}
    log.info("%s: starting the emulator (%d repositories, %d images, %s ms latency)", source.name, args.repositories, args.images, latency_ms)
    with EmulatorProcess(source.name, spec, {"latency_ms": latency_ms}) as emulator:
        run["inventory"] = dict(emulator.counts)
        env = dict(emulator.env)

        def phase(label: str, ref: str, **kwargs: Any) -> Dict[str, Any]:
            emulator.reset_counters()
            log.info("%s: %s ...", source.name, label)
            emulator_cpu = emulator.cpu_seconds()
            result = measure(ref, env, **kwargs)
            # the registry's side: on a 2-core machine it competes with the load for the cores
            result["emulator_cpu_seconds"] = emulator.cpu_seconds() - emulator_cpu
            result["requests"] = emulator.counters()
            result["inventory_images"] = run["inventory"]["images"]
            if result.get("ok"):
                result["images_per_s"] = run["inventory"]["images"] / result["seconds"]
                log.info("%s: %s %.1f s, %.0f images/s, peak RSS %.0f MB", source.name, label, result["seconds"], result["images_per_s"], result["peak_rss_mb"])
            else:
                log.error("%s: %s failed: %s\n%s", source.name, label, result.get("error"), result.get("traceback", ""))
            run["phases"][label] = result
            return result

        if source.baseline and not args.skip_baseline:
            phase("baseline", source.baseline, duckdb_path=os.path.join(workdir, "baseline.duckdb"))
        ours = os.path.join(workdir, "ours")
        os.makedirs(ours)
        phase("full", "benchmarks.loads:our_load", provider=source.name, workdir=ours, source_options=source.source_options)
        phase("noop", "benchmarks.loads:our_load", provider=source.name, workdir=ours, source_options=source.source_options)
        share = args.change_percent / 100.0
        changes = {
            "move_tags": max(1, round(run["inventory"]["tags"] * share)),
            "push_images": max(1, round(args.images * share)),
        }
        started = time.monotonic()
        run["changes"] = emulator.mutate(**changes)
        log.info("%s: mutated the inventory %s in %.1f s", source.name, run["changes"], time.monotonic() - started)
        phase("changed", "benchmarks.loads:our_load", provider=source.name, workdir=ours, source_options=source.source_options)
    run["detail_operations"] = list(source.detail_operations)
    run["checks"] = checks(run, source)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return run


def floor_seconds(phase: Dict[str, Any]) -> float:
    """The shortest wall time any load can take to make this phase's calls against this
    emulator: the CPU the emulator spent answering them, since it is one Python process (one
    core at most). A bound on the registry's side only: the client's CPU is left out, because a
    load can spend less of it than the naive baseline (ECR's baseline parses with botocore's
    stock parser, which our source replaced with a faster one)."""
    return phase.get("emulator_cpu_seconds", 0.0)


def checks(run: Dict[str, Any], source: BenchSource) -> Dict[str, Any]:
    """The issue's targets, each as {value, target, met}; where this machine and emulator bound
    a target, also `best_here` (the best value any load could reach against this emulator) and
    `reachable_here`: the full load no shorter than the emulator's CPU for the baseline's calls,
    the no-op no shorter than its own emulator CPU (a faster full load only raises its share)."""
    phases = run["phases"]
    out: Dict[str, Any] = {}
    full, noop, base = phases.get("full", {}), phases.get("noop", {}), phases.get("baseline", {})
    floor = floor_seconds(base) if base.get("ok") else None
    if full.get("ok") and base.get("ok"):
        ratio = full["seconds"] / base["seconds"]
        limit = TARGET_FULL_VS_BASELINE if not run["latency_ms"] else TARGET_FULL_VS_BASELINE_LATENCY
        out["full_vs_baseline"] = {"value": round(ratio, 3), "target": f"<= {limit}", "met": ratio <= limit}
        if floor:
            best = floor / base["seconds"]
            out["full_vs_baseline"].update(best_here=round(best, 3), reachable_here=best <= limit)
        # not a target: CPU time, which a busy machine distorts less than wall time
        out["full_cpu_vs_baseline_cpu"] = {"value": round(full["cpu_seconds"] / base["cpu_seconds"], 3), "target": "(info)", "met": True}
    if full.get("ok") and not run["latency_ms"]:
        out["full_images_per_s"] = {"value": round(full["images_per_s"]), "target": f">= {TARGET_IMAGES_PER_S}", "met": full["images_per_s"] >= TARGET_IMAGES_PER_S}
        if floor:
            best = full["inventory_images"] / floor
            out["full_images_per_s"].update(best_here=round(best), reachable_here=best >= TARGET_IMAGES_PER_S)
    if full.get("ok"):
        out["full_peak_rss_mb"] = {"value": round(full["peak_rss_mb"]), "target": f"<= {TARGET_RSS_MB}", "met": full["peak_rss_mb"] <= TARGET_RSS_MB}
    if full.get("ok") and noop.get("ok"):
        share = noop["seconds"] / full["seconds"]
        best = floor_seconds(noop) / full["seconds"]
        out["noop_vs_full"] = {"value": round(share, 3), "target": f"<= {TARGET_NOOP_SHARE}", "met": share <= TARGET_NOOP_SHARE,
                               "best_here": round(best, 3), "reachable_here": best <= TARGET_NOOP_SHARE}
        if source.detail_operations:
            detail_calls = sum(noop["requests"].get(op, 0) for op in source.detail_operations)
            out["noop_detail_calls"] = {"value": detail_calls, "target": "0", "met": detail_calls == 0}
    return out


def render(runs: List[Dict[str, Any]]) -> str:
    lines = []
    for run in runs:
        inv = run.get("inventory", {})
        lines.append("")
        lines.append(
            f"{run['source']}  latency {run['latency_ms']:g} ms  inventory: {inv.get('repositories')} repositories, "
            f"{inv.get('images')} images (manifests), {inv.get('tags')} tags; changes {run.get('changes')}"
        )
        header = f"  {'phase':<9} {'wall s':>8} {'cpu s':>7} {'emu cpu':>7} {'images/s':>10} {'x base':>7} {'cpu x base':>10} {'RSS MB':>7} {'procs':>5}  requests"
        lines.append(header)
        base = run["phases"].get("baseline")
        for label, p in run["phases"].items():
            if not p.get("ok"):
                lines.append(f"  {label:<9} FAILED: {p.get('error')}")
                continue
            ratio = f"{p['seconds'] / base['seconds']:.2f}" if base and base.get("ok") else "-"
            cpu_ratio = f"{p['cpu_seconds'] / base['cpu_seconds']:.2f}" if base and base.get("ok") else "-"
            requests = ", ".join(f"{op} {n}" for op, n in sorted(p["requests"].items()))
            steps = p.get("result", {}).get("steps") if isinstance(p.get("result"), dict) else None
            lines.append(
                f"  {label:<9} {p['seconds']:>8.1f} {p['cpu_seconds']:>7.1f} {p.get('emulator_cpu_seconds', 0):>7.1f} {p['images_per_s']:>10,.0f} {ratio:>7} {cpu_ratio:>10} {p['peak_rss_mb']:>7.0f} {p.get('processes', 1):>5}  {requests}"
            )
            if steps:
                lines.append(f"  {'':<9} steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()))
        for name, check in run.get("checks", {}).items():
            verdict = "met" if check["met"] else "MISSED"
            if not check["met"] and "best_here" in check:
                verdict += f" (best this emulator allows: {check['best_here']}, {'reachable' if check['reachable_here'] else 'unreachable'})"
            lines.append(f"  target {name:<20} {check['value']!s:>10} (want {check['target']}): {verdict}")
    return "\n".join(lines)


def _commit() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(__file__)).stdout.strip() or None
    except OSError:
        return None
