# SPDX-License-Identifier: BSL-1.0
"""Python side of the spawn benchmarks, run by bench_spawn_wait and run.py.

    python3 spawn_peer.py run CHILD N ROUNDS SIZES

N x subprocess.run([CHILD]) per round, with its defaults (stdio inherited, close_fds=True);
prints "FIGURE spawn.<size>.python_run=<microseconds per spawn> us". SIZES: comma-separated MiB
the process touches before its rounds, ascending ("0" = as started), grown in place so each size
is touched once. Only the spawning is timed.
"""
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[1] != "run":
        print("usage: python3 spawn_peer.py run CHILD N ROUNDS [SIZES]", file=sys.stderr)
        return 2
    child, n, rounds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    sizes = [int(s) for s in (sys.argv[5] if len(sys.argv) > 5 else "0").split(",")]
    ballast, touched = [], 0  # bytearray(b"\1") * k fills k bytes: every page resident
    for mib in sizes:
        if mib > touched:
            ballast.append(bytearray(b"\1") * ((mib - touched) << 20))
            touched = mib
        label = f"{mib}M" if mib else "small"
        for _ in range(min(n, 5)):  # warm-up
            subprocess.run([child], check=True)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                subprocess.run([child], check=True)
            us = (time.perf_counter() - t0) / n * 1e6
            print(f"FIGURE spawn.{label}.python_run={us:.6g} us", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
