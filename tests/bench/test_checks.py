"""The benchmark's targets and the bounds the emulator puts on them (benchmarks.cli.checks)."""

from __future__ import annotations

import json

from benchmarks.cli import checks, floor_seconds, main
from benchmarks.sources import BENCH_SOURCES


def phase(seconds, cpu, emulator, **extra):
    return {"ok": True, "seconds": seconds, "cpu_seconds": cpu, "emulator_cpu_seconds": emulator,
            "inventory_images": 250_000, "images_per_s": 250_000 / seconds, "peak_rss_mb": 700,
            "requests": {}, **extra}


def test_the_floor_is_the_emulators_cpu_whatever_the_clients():
    assert floor_seconds(phase(99.0, 40.0, 10.0)) == 10.0
    assert floor_seconds(phase(99.0, 1.0, 10.0)) == 10.0
    assert floor_seconds({"ok": True, "seconds": 1.0, "cpu_seconds": 1.0}) == 0.0


def test_a_target_missed_within_what_the_emulator_allows_is_reachable():
    run = {"latency_ms": 0.0, "phases": {
        "baseline": phase(20.0, 10.0, 10.0),  # the emulator's 10 s: at best 25,000 images/s
        "full": phase(27.0, 32.0, 12.0),
        "noop": phase(1.7, 1.1, 0.7),
    }}
    got = checks(run, BENCH_SOURCES["ncp"])
    assert got["full_images_per_s"] == {"value": 9259, "target": ">= 10000", "met": False, "best_here": 25000, "reachable_here": True}
    assert got["full_vs_baseline"]["met"] and got["full_vs_baseline"]["best_here"] == 0.5
    assert got["noop_vs_full"]["met"] and got["noop_vs_full"]["best_here"] == round(0.7 / 27.0, 3)
    assert got["noop_detail_calls"] == {"value": 0, "target": "0", "met": True}


def test_targets_the_emulator_alone_rules_out_are_unreachable():
    run = {"latency_ms": 20.0, "phases": {
        "baseline": phase(30.0, 14.0, 11.5),  # 252 calls: 20 ms adds 5 s; 0.25x is 7.5 s < 11.5 s
        "full": phase(23.0, 25.0, 11.3),
        "noop": phase(15.0, 7.0, 11.3),  # the emulator alone: 11.3 s of the 23 s full load
    }}
    got = checks(run, BENCH_SOURCES["yandex"])
    assert got["full_vs_baseline"]["target"] == "<= 0.25"
    assert got["full_vs_baseline"]["best_here"] == round(11.5 / 30.0, 3) and not got["full_vs_baseline"]["reachable_here"]
    assert not got["noop_vs_full"]["met"] and not got["noop_vs_full"]["reachable_here"]
    assert "full_images_per_s" not in got  # a target of the run without latency


def test_a_baseline_without_emulator_cpu_gives_no_bound():
    run = {"latency_ms": 0.0, "phases": {"baseline": phase(20.0, 10.0, 0.0), "full": phase(40.0, 30.0, 0.0)}}
    got = checks(run, BENCH_SOURCES["oci"])
    assert got["full_images_per_s"] == {"value": 6250, "target": ">= 10000", "met": False}


def test_report_prints_a_results_file_with_the_bounds(tmp_path, capsys):
    document = {"commit": "abc", "machine": {"cpus": 2}, "runs": [{
        "source": "ncp", "latency_ms": 0.0, "inventory": {"repositories": 2, "images": 250_000, "tags": 4},
        "detail_operations": ["ListTags"],
        "phases": {"baseline": phase(20.0, 10.0, 10.0), "full": phase(27.0, 32.0, 12.0), "noop": phase(1.7, 1.1, 0.7)},
    }]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    assert main(["--report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "full_images_per_s" in out and "MISSED (best this emulator allows: 25000, reachable)" in out
    assert "noop_detail_calls" in out
