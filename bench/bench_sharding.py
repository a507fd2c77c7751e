"""What sharding costs the scheduler and how evenly it spreads the monitors.

For each fleet size and replica count: the time of one tick's ownership questions (every
monitor asked once) right after a membership change (each monitor hashed against every member)
and on a steady tick (remembered owners); the largest and smallest share against the even one;
and the monitors that move when one replica leaves and when one joins, against the ideal 1/N.

    PYTHONPATH=operator python bench/bench_sharding.py --output bench/results/sharding.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from evergreen.controller.sharding import Key, Ownership, owner

FLEETS = (1_000, 5_000, 20_000)
REPLICAS = (2, 3, 10)
COMMAND = "PYTHONPATH=operator python bench/bench_sharding.py --output bench/results/sharding.txt"


def keys(count: int) -> list[Key]:
    return [(f"team-{i % 97}", f"model-{i}") for i in range(count)]


def tick_seconds(ownership: Ownership, fleet: list[Key], now: float) -> float:
    started = time.perf_counter()
    for key in fleet:
        ownership.owns(key, now)
    return time.perf_counter() - started


def row(count: int, replicas: int) -> str:
    fleet = keys(count)
    members = [f"evergreen-{i}" for i in range(replicas)]
    ownership = Ownership(members[0], grace=15, now=0)
    ownership.observe(members[1:], now=0)
    first = tick_seconds(ownership, fleet, 100)
    steady = min(tick_seconds(ownership, fleet, 100) for _ in range(5))
    shares = Counter(owner(key, members) for key in fleet)
    even = count / replicas
    left = sum(1 for key in fleet if owner(key, members) != owner(key, members[1:]))
    joined = [*members, f"evergreen-{replicas}"]
    moved = sum(1 for key in fleet if owner(key, members) != owner(key, joined))
    return (
        f"{count:>7,} {replicas:>8} {first * 1e3:>12.1f} {steady * 1e3:>11.2f} {steady / count * 1e6:>9.2f}"
        f" {max(shares.values()) / even:>9.2f} {min(shares.values()) / even:>9.2f}"
        f" {left / count:>9.1%} {1 / replicas:>6.1%} {moved / count:>9.1%} {1 / (replicas + 1):>6.1%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args()
    lines = [
        f"$ {COMMAND}",
        "",
        "Sharding: ownership questions per scheduler tick, spread and movement (bench/bench_sharding.py)",
        f"python {platform.python_version()}, {platform.machine()}, cores visible: {os.cpu_count()},"
        f" load average at start: {os.getloadavg()[0]:.2f}",
        "first tick = right after a membership change (every monitor hashed against every member);"
        " steady = best of 5 later ticks",
        "max/min share = largest/smallest replica's monitors over the even share;"
        " moved = monitors changing owner (ideal: 1/N when one of N leaves, 1/(N+1) when one joins)",
        "",
        f"{'monitors':>7} {'replicas':>8} {'first ms':>12} {'steady ms':>11} {'us/mon':>9}"
        f" {'max share':>9} {'min share':>9} {'left':>9} {'ideal':>6} {'joined':>9} {'ideal':>6}",
    ]
    for count in FLEETS:
        for replicas in REPLICAS:
            lines.append(row(count, replicas))
    lines.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
