#!/usr/bin/env python3
# Licensed under the MIT License. See LICENSE in the repository root.
"""Pre-copy with throttling against pre-copy then post-copy, on the sample's KVM guest, in one run.

The guest is the comparison's (benchmarks/qemu/compare.py): the sample's boot sector in a 1 GiB KVM guest,
incrementing the first byte of every page of a 512 MiB working set pass after pass, here unthrottled (`--rate 0`),
with a downtime limit pre-copy cannot meet (0.1 ms by default: a stop-copy's fixed part alone is longer). Both cases
run the sample in one process (`LiveMigration --vcpu-only --connections 2`), published Native AOT as a VMM ships:

- pre-copy, throttled (the baseline): `--throttle`, auto-converge as QEMU's cpu-throttle (the vCPU kept out 20% of
  the time at the first stall, 10 points more at each next, to 99%), switching over at the round budget;
- pre-copy, then post-copy: `--postcopy`, switched at the first stall, the guest resumed on the destination at once,
  its touches of missing pages fetched while the source pushes the rest.

Each case's columns are medians over --reps runs, interleaved: the time from the start to every page at the
destination, the downtime, the bytes sent, and the guest's pace (its passes on either host per second over that
time, against its pace alone in the 1.5 s before; the source's to its pause, the destination's since its resume),
with the ratio to the baseline; for post-copy, its pages requested and pushed, request latency and blocked time.
Every resumed guest is checked against its invariant on the destination.

usage: benchmarks/postcopy/kvm.py [--reps N] [--downtime-ms MS] [--jit]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qemu"))
import compare  # noqa: E402  (the comparison's sample build and machine description)

CASES = {"pre-copy, throttled (baseline)": ["--throttle"], "pre-copy, then post-copy": ["--postcopy"]}
POST_COPY = re.compile(r"post-copy: (?P<requested>[\d,]+) pages requested, (?P<pushed>[\d,]+) pushed, request latency median "
                       r"(?P<median>[\d.]+) ms, p99 (?P<p99>[\d.]+) ms, blocked (?P<blocked>[\d.]+) ms")


def run(sample, case, downtime_ms):
    command = sample + CASES[case] + ["--vcpu-only", "--connections", "2", "--rate", "0", "--guest-mib", str(compare.GUEST_MIB),
                                      "--working-set-mib", str(compare.WORKING_SET_MIB), "--warmup-ms", "3000", "--downtime-ms", str(downtime_ms)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    line = next((l for l in out.stdout.splitlines() if l.startswith("result:")), None)
    if line is None or out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    fields = dict(f.split("=") for f in line.split()[1:])
    result = {"complete_ms": float(fields["complete_ms"]), "downtime_ms": float(fields["downtime_ms"]), "mb": float(fields["mb"]),
              "pace": float(fields["pace"]), "throttle": float(fields["throttle"]), "rounds": int(fields["rounds"]),
              "invariant": fields["invariant"], "post_copy": None}
    match = next((m for m in map(POST_COPY.search, out.stdout.splitlines()) if m), None)
    if match:
        result["post_copy"] = {k: float(v.replace(",", "")) for k, v in match.groupdict().items()}
    return result


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--downtime-ms", type=float, default=0.1)
    parser.add_argument("--jit", action="store_true", help="run the sample under the JIT instead of Native AOT")
    args = parser.parse_args()
    if not os.path.exists("/dev/kvm"):
        print("this comparison needs /dev/kvm (the sample's guest is a KVM guest)", file=sys.stderr)
        return 2
    sample = compare.ensure_tools(args.jit)
    results = {case: [] for case in CASES}
    for rep in range(args.reps):
        for case in CASES:  # interleaved, rep after rep
            r = run(sample, case, args.downtime_ms)
            results[case].append(r)
            pc = r["post_copy"]
            print(f"rep {rep + 1} {case}: complete {r['complete_ms']:7.0f} ms downtime {r['downtime_ms']:6.1f} ms {r['mb']:7.0f} MB "
                  f"pace {r['pace']:.2f} throttle {r['throttle']:.2f} rounds {r['rounds']} invariant {r['invariant']}"
                  + (f"; post-copy {pc['requested']:.0f} requested, {pc['pushed']:.0f} pushed, latency median {pc['median']} ms p99 {pc['p99']} ms, "
                     f"blocked {pc['blocked']:.0f} ms" if pc else ""), flush=True)

    print()
    print(f"{compare.machine()}; downtime limit {args.downtime_ms} ms; medians of {args.reps}")
    print()
    print("| | time to every page | ratio | downtime | ratio | sent | guest pace | ratio | throttle reached | invariant | post-copy: requested / pushed, latency median (p99), blocked |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    base = results[next(iter(CASES))]
    for case, runs in results.items():
        post = [r["post_copy"] for r in runs if r["post_copy"]]
        post_cell = (f"{len(post)} of {len(runs)} runs: {statistics.median(p['requested'] for p in post):,.0f} / {statistics.median(p['pushed'] for p in post):,.0f}, "
                     f"{statistics.median(p['median'] for p in post):.2f} ms ({statistics.median(p['p99'] for p in post):.2f} ms), "
                     f"{statistics.median(p['blocked'] for p in post):.0f} ms") if post else "none"
        invariant = "ok" if all(r["invariant"] == "ok" for r in runs) else "BROKEN"
        print(f"| {case} | {median(runs, 'complete_ms'):,.0f} ms | {median(runs, 'complete_ms') / median(base, 'complete_ms'):.2f} |"
              f" {median(runs, 'downtime_ms'):.1f} ms | {median(runs, 'downtime_ms') / median(base, 'downtime_ms'):.2f} |"
              f" {median(runs, 'mb'):,.0f} MB | {median(runs, 'pace'):.2f} | {median(runs, 'pace') / max(median(base, 'pace'), 0.01):.2f} |"
              f" {median(runs, 'throttle'):.2f} | {invariant} | {post_cell} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
