"""The benchmark's targets and the bounds this machine puts on them (benchmarks.cli.checks)."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import checks, floor_seconds, main
from benchmarks.sources import BENCH_SOURCES


def phase(seconds, cpu, emulator, **extra):
    return {"ok": True, "seconds": seconds, "cpu_seconds": cpu, "emulator_cpu_seconds": emulator,
            "inventory_images": 250_000, "images_per_s": 250_000 / seconds, "peak_rss_mb": 700,
            "requests": {}, **extra}


@pytest.mark.parametrize(
    "cpu, emulator, cores, floor",
    [
        (10.0, 10.0, 2, 10.0),  # both spread over two cores
        (4.0, 16.0, 2, 16.0),  # the emulator's one process is the floor
        (30.0, 10.0, 4, 10.0),
        (30.0, 2.0, 1, 32.0),
    ],
)
def test_floor_seconds(cpu, emulator, cores, floor):
    assert floor_seconds(phase(99.0, cpu, emulator), cores) == pytest.approx(floor)


def test_a_target_missed_within_what_the_machine_allows_is_reachable():
    run = {"latency_ms": 0.0, "phases": {
        "baseline": phase(20.0, 10.0, 10.0),  # floor 10 s: at best 25,000 images/s
        "full": phase(27.0, 32.0, 12.0),
        "noop": phase(1.7, 1.1, 0.7),
    }}
    got = checks(run, BENCH_SOURCES["ncp"], cores=2)
    assert got["full_images_per_s"] == {"value": 9259, "target": ">= 10000", "met": False, "best_here": 25000, "reachable_here": True}
    assert got["full_vs_baseline"]["met"] and got["full_vs_baseline"]["best_here"] == 0.5
    assert got["noop_vs_full"]["met"] and got["noop_vs_full"]["best_here"] == round(0.7 / 27.0, 3)


def test_targets_the_machine_cannot_meet_are_unreachable():
    run = {"latency_ms": 20.0, "phases": {
        "baseline": phase(38.0, 15.0, 20.0),  # 252 calls: 20 ms adds 5 s; floor 20 s
        "full": phase(34.0, 30.0, 21.0),
        "noop": phase(26.0, 8.0, 23.0),  # the emulator alone: 23 s of the 34 s full load
    }}
    got = checks(run, BENCH_SOURCES["yandex"], cores=2)
    assert got["full_vs_baseline"]["target"] == "<= 0.25"
    assert got["full_vs_baseline"]["best_here"] == round(20.0 / 38.0, 3) and not got["full_vs_baseline"]["reachable_here"]
    assert not got["noop_vs_full"]["met"] and not got["noop_vs_full"]["reachable_here"]
    assert "full_images_per_s" not in got  # a target of the run without latency


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
    assert "full_images_per_s" in out and "MISSED (best this machine allows: 25000, reachable here)" in out
    assert "noop_detail_calls" in out
