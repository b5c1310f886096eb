#!/usr/bin/env python3
# Licensed under the MIT License. See LICENSE in the repository root.
"""QEMU's live migration against the sample's, on the same guest, interleaved on this machine.

Both migrate a 1 GiB KVM guest running the sample's boot sector (samples/LiveMigration/Guest/boot.S), which
increments the first byte of every page of a 512 MiB working set, pass after pass, paced to a rate; over loopback
TCP, with a 300 ms downtime limit and unlimited bandwidth. QEMU is driven through QMP (no capabilities: no multifd,
no auto-converge); the sample runs as `LiveMigration --vcpu-only`, published Native AOT (as a VMM ships: no JIT
compiling inside the downtime; `--jit` runs the framework-dependent build instead). Both log the vCPU's writes with
KVM's dirty bitmap, and with `--modes log,ring` also with a 65,536-entry dirty ring (QEMU `dirty-ring-size`, the
sample `--dirty-ring`). Every resumed destination is checked against the guest's invariant (QEMU's memory dumped with
pmemsave). Prints medians and DirtyLog/QEMU ratios, and the ratio of DirtyLog's median to QEMU's fastest run.

Transports (--transports): plain, one connection each; multifd2 and multifd4, QEMU's multifd with 2 and 4 channels
against the sample's --connections 2 and 4; tls, both over mutual TLS 1.3 with x509 certificates the script makes
(the sample's `certs`, copied to QEMU's file names; QEMU verifies the peer and allows only CN=source-1 by tls-authz,
as the sample's --tls-dir does); tls-multifd4, both at once. --accel tcg checks the QEMU side on a machine without
/dev/kvm (with --qemu-only: the sample's guest needs KVM).

--chart FILE.png draws the table (total time and downtime, both systems side by side per row) with the benchmarks'
chart command (`DirtyLog.Benchmarks chart-qemu-comparison`) and keeps the medians beside it (FILE.json);
--from-table FILE.md draws the chart of a table this script printed before (the first such table in FILE.md) without
running anything.

usage: benchmarks/qemu/compare.py [--reps N] [--rates idle,5000,50000,unthrottled] [--modes log,ring]
                                  [--transports plain,multifd2,multifd4,tls,tls-multifd4] [--jit] [--accel kvm|tcg] [--qemu-only]
                                  [--chart FILE.png [--from-table FILE.md]]
"""
import argparse
import datetime
import json
import platform
import re
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SAMPLE_PROJECT = os.path.join(ROOT, "samples", "LiveMigration")
SAMPLE_JIT = os.path.join(SAMPLE_PROJECT, "bin", "Release", "net10.0", "LiveMigration.dll")
SAMPLE_AOT = os.path.join(ROOT, "artifacts", "compare", "LiveMigration")
RING_ENTRIES = 65536
GUEST_MIB, WORKING_SET_MIB, FIRST_PAGE = 1024, 512, 256
WARMUP_S = 3.0
RATES = {"idle": 2, "5000": 5000, "50000": 50000, "unthrottled": 0}
TRANSPORTS = {"plain": (0, False), "multifd2": (2, False), "multifd4": (4, False), "tls": (0, True), "tls-multifd4": (4, True)}


def make_certificates(sample, work):
    """The sample's test CA and certificates, and the same files under the names QEMU's tls-creds-x509 reads."""
    directory = os.path.join(work, "certs")
    subprocess.run(sample + ["certs", "--out", directory], check=True, stdout=subprocess.DEVNULL)
    for ours, qemus in (("ca.pem", "ca-cert.pem"), ("destination.pem", "server-cert.pem"), ("destination.key", "server-key.pem"),
                        ("source.pem", "client-cert.pem"), ("source.key", "client-key.pem")):
        shutil.copyfile(os.path.join(directory, ours), os.path.join(directory, qemus))
    return directory


def ensure_tools(jit):
    if shutil.which("qemu-system-x86_64") is None:
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "qemu-system-x86"], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if jit:
        subprocess.run(["dotnet", "build", "-c", "Release", SAMPLE_PROJECT], check=True, stdout=subprocess.DEVNULL)
        return ["dotnet", SAMPLE_JIT]
    subprocess.run(["dotnet", "publish", "-c", "Release", "-r", "linux-x64", "-p:PublishAot=true",
                    "-o", os.path.dirname(SAMPLE_AOT), SAMPLE_PROJECT], check=True, stdout=subprocess.DEVNULL)
    return [SAMPLE_AOT]


class Qmp:
    """A QMP client: one JSON command per line, events skipped."""

    def __init__(self, path):
        deadline = time.time() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.execute("qmp_capabilities")

    def execute(self, command, **arguments):
        self.file.write(json.dumps({"execute": command, "arguments": arguments} if arguments else {"execute": command}) + "\n")
        self.file.flush()
        while True:
            reply = json.loads(self.file.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")
            return reply["return"]

    def close(self):
        self.sock.close()


def check_invariant(first_bytes):
    """One run of v+1 then one run of v (mod 256): None when it holds, else what is wrong."""
    head = first_bytes[0]
    i = 1
    while i < len(first_bytes) and first_bytes[i] == head:
        i += 1
    if i == len(first_bytes):
        return None if head != 0 else "the guest never ran"
    tail = first_bytes[i]
    if (tail + 1) % 256 != head:
        return f"page {FIRST_PAGE + i}: {tail} after a run of {head}"
    for j in range(i, len(first_bytes)):
        if first_bytes[j] != tail:
            return f"page {FIRST_PAGE + j}: {first_bytes[j]} in a run of {tail} (a lost page)"
    return None


def qemu_vm(image, qmp, ring, accel, incoming=False, certs=None):
    accel = f"{accel},dirty-ring-size={RING_ENTRIES}" if ring and accel == "kvm" else accel
    args = ["qemu-system-x86_64", "-accel", accel, "-m", str(GUEST_MIB), "-display", "none", "-serial", "none",
            "-monitor", "none", "-nodefaults", "-drive", f"file={image},format=raw,if=ide",
            "-qmp", f"unix:{qmp},server=on,wait=off"]
    if certs:
        endpoint = "server,verify-peer=on" if incoming else "client"
        args += ["-object", f"tls-creds-x509,id=tls0,dir={certs},endpoint={endpoint}"]
        if incoming:
            args += ["-object", "authz-simple,id=auth0,identity=CN=source-1"]
    if incoming:
        args += ["-incoming", "defer"]  # the capabilities and parameters first, then migrate-incoming
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def set_transport(vm, channels, certs, destination):
    """multifd with its channels, and TLS (the destination authorizes CN=source-1; the source checks the name)."""
    if channels:
        vm.execute("migrate-set-capabilities", capabilities=[{"capability": "multifd", "state": True}])
        vm.execute("migrate-set-parameters", **{"multifd-channels": channels})
    if certs:
        vm.execute("migrate-set-parameters", **({"tls-creds": "tls0", "tls-authz": "auth0"} if destination else {"tls-creds": "tls0", "tls-hostname": "localhost"}))


def wait_for_guest(vm):
    """Waits until the boot sector runs: the first byte of its first page is set."""
    deadline = time.time() + 120
    while True:
        line = vm.execute("human-monitor-command", **{"command-line": f"xp /1xb {FIRST_PAGE * 4096:#x}"})
        if int(line.split(":")[1].split()[0], 16) != 0:
            return
        if time.time() > deadline:
            raise RuntimeError("the guest never started")
        time.sleep(0.1)


def run_qemu(image, work, ring, accel, channels=0, certs=None):
    port = free_port()
    src_sock, dst_sock = os.path.join(work, "src.qmp"), os.path.join(work, "dst.qmp")
    for path in (src_sock, dst_sock):
        if os.path.exists(path):
            os.remove(path)
    dst = qemu_vm(image, dst_sock, ring, accel, incoming=True, certs=certs)
    src = qemu_vm(image, src_sock, ring, accel, certs=certs)
    try:
        source, destination = Qmp(src_sock), Qmp(dst_sock)
        set_transport(destination, channels, certs, destination=True)
        destination.execute("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        wait_for_guest(source)  # SeaBIOS takes seconds here before it hands over to the boot sector
        time.sleep(WARMUP_S)
        set_transport(source, channels, certs, destination=False)
        source.execute("migrate-set-parameters", **{"downtime-limit": 300, "max-bandwidth": 100 * 1024 ** 3})
        source.execute("migrate", uri=f"tcp:127.0.0.1:{port}")
        while True:
            state = source.execute("query-migrate")
            if state.get("status") == "failed":
                raise RuntimeError(f"QEMU's migration failed: {state}")
            if state.get("status") == "completed" and state.get("total-time", 0) > 0:
                break
            time.sleep(0.02)
        deadline = time.time() + 30
        while destination.execute("query-status")["status"] != "running":
            if time.time() > deadline:
                raise RuntimeError("the destination never ran")
            time.sleep(0.02)
        time.sleep(0.5)  # the guest runs on the destination
        destination.execute("stop")
        dump = os.path.join(work, "dst.mem")
        destination.execute("pmemsave", val=0, size=GUEST_MIB << 20, filename=dump)
        with open(dump, "rb") as f:
            memory = f.read()
        os.remove(dump)
        pages = (WORKING_SET_MIB << 20) // 4096
        broken = check_invariant([memory[(FIRST_PAGE + p) * 4096] for p in range(pages)])
        return {"total_ms": float(state["total-time"]), "downtime_ms": float(state["downtime"]),
                "mb": state["ram"]["transferred"] / 1e6 if "ram" in state else 0.0, "invariant": broken or "ok"}
    finally:
        for vm in (src, dst):
            vm.kill()
            vm.wait()


def run_sample(sample, rate, ring, connections=0, certs=None):
    transport = (["--connections", str(connections)] if connections else []) + (["--tls-dir", certs] if certs else [])
    out = subprocess.run(sample + transport + (["--dirty-ring", str(RING_ENTRIES)] if ring else []) + ["--guest-mib", str(GUEST_MIB), "--working-set-mib", str(WORKING_SET_MIB),
                          "--rate", str(rate), "--vcpu-only", "--downtime-ms", "300", "--warmup-ms", str(int(WARMUP_S * 1000))],
                         capture_output=True, text=True, timeout=600)
    line = next((l for l in out.stdout.splitlines() if l.startswith("result:")), None)
    if line is None:
        raise RuntimeError(f"the sample printed no result:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    fields = dict(f.split("=") for f in line.split()[1:])
    return {"total_ms": float(fields["total_ms"]), "downtime_ms": float(fields["downtime_ms"]), "mb": float(fields["mb"]),
            "invariant": "ok" if fields["invariant"] == "ok" and fields["digest"] == "ok" else fields["invariant"] + "/" + fields["digest"]}


def machine():
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    model = next((l.split(":", 1)[1].strip() for l in cpuinfo.splitlines() if l.startswith("model name")), platform.machine())
    flags = " with AVX-512" if "avx512f" in cpuinfo else ""
    kvm = "/dev/kvm" if os.path.exists("/dev/kvm") else "no /dev/kvm"
    return f"{os.cpu_count()}-vCPU {model}{flags}, {kvm}"


def rows_from_table(path):
    """The rows of the first comparison table in a Markdown file, as this script prints them (older prints lack the
    transport column and the fastest run): medians in seconds and milliseconds."""
    lines = [l for l in open(path).read().splitlines() if l.startswith("|")]
    start = next((i for i, l in enumerate(lines) if "QEMU total" in l and "DirtyLog downtime" in l), None)
    if start is None:
        raise SystemExit(f"{path}: no comparison table")
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    column = {name: i for i, name in enumerate(header)}

    def find(prefix):
        return next(i for name, i in column.items() if name.startswith(prefix))

    def number(cell):
        return float(re.match(r"\s*([0-9.,]+)", cell).group(1).replace(",", ""))

    rows = []
    for line in lines[start + 2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break
        rows.append({"guest": cells[0], "dirty_log_mode": cells[1],
                     "transport": cells[column["transport"]] if "transport" in column else "plain",
                     "qemu_total_ms": number(cells[find("QEMU total")]) * 1000, "dirty_log_total_ms": number(cells[find("DirtyLog total")]) * 1000,
                     "qemu_downtime_ms": number(cells[find("QEMU downtime")]), "dirty_log_downtime_ms": number(cells[find("DirtyLog downtime")])})
    return rows


def draw_chart(chart, rows, date, where, source):
    """Keeps the medians beside the chart and draws it with the benchmarks' chart command."""
    data = os.path.splitext(chart)[0] + ".json"
    with open(data, "w") as f:
        json.dump({"date": date, "machine": where, "source": source, "rows": rows}, f, indent=1)
        f.write("\n")
    subprocess.run(["dotnet", "run", "-c", "Release", "--project", os.path.join(ROOT, "benchmarks", "DirtyLog.Benchmarks"), "--",
                    "chart-qemu-comparison", data, chart], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rates", default="idle,5000,50000,unthrottled")
    parser.add_argument("--modes", default="log,ring")
    parser.add_argument("--transports", default="plain")
    parser.add_argument("--jit", action="store_true", help="run the sample under the JIT instead of Native AOT")
    parser.add_argument("--accel", default="kvm", choices=["kvm", "tcg"], help="QEMU's accelerator (tcg: to check the QEMU side without /dev/kvm)")
    parser.add_argument("--qemu-only", action="store_true", help="run QEMU alone (the sample's guest needs KVM)")
    parser.add_argument("--chart", help="draw the table into this PNG (its medians kept beside it as .json)")
    parser.add_argument("--from-table", help="draw --chart from the first comparison table of this Markdown file; run nothing")
    parser.add_argument("--date", help="with --from-table: the date the table was measured")
    parser.add_argument("--machine", help="with --from-table: the machine it was measured on")
    args = parser.parse_args()
    if args.from_table:
        if not args.chart or not args.date or not args.machine:
            parser.error("--from-table needs --chart, --date and --machine (the table's own date and machine)")
        draw_chart(args.chart, rows_from_table(args.from_table), args.date, args.machine, f"the table in {os.path.relpath(args.from_table, ROOT)}")
        return 0
    sample = ensure_tools(args.jit)
    rates = [(r, m, t) for t in args.transports.split(",") for m in args.modes.split(",") for r in args.rates.split(",")]
    unknown = [t for _, _, t in rates if t not in TRANSPORTS]
    if unknown:
        parser.error(f"unknown transport {unknown[0]} (one of {', '.join(TRANSPORTS)})")
    results = {(r, who): [] for r in rates for who in ("qemu", "dirtylog")}
    with tempfile.TemporaryDirectory() as work:
        certs = make_certificates(sample, work) if any(TRANSPORTS[t][1] for _, _, t in rates) else None
        images = {}
        for rate in {r for r, _, _ in rates}:
            images[rate] = os.path.join(work, f"guest-{rate}.img")
            subprocess.run(sample + ["boot-sector", "--out", images[rate], "--guest-mib", str(GUEST_MIB),
                                     "--working-set-mib", str(WORKING_SET_MIB), "--rate", str(RATES[rate])], check=True, stdout=subprocess.DEVNULL)
        for rep in range(args.reps):
            for r in rates:  # interleaved: each rate, mode and transport, QEMU then DirtyLog, rep after rep
                rate, mode, transport = r
                channels, tls = TRANSPORTS[transport]
                q = run_qemu(images[rate], work, mode == "ring", args.accel, channels, certs if tls else None)
                results[(r, "qemu")].append(q)
                line = f"rep {rep + 1} {rate:>11} {mode} {transport}: QEMU total {q['total_ms']:7.0f} ms downtime {q['downtime_ms']:6.0f} ms {q['mb']:7.0f} MB invariant {q['invariant']}"
                if not args.qemu_only:
                    d = run_sample(sample, RATES[rate], mode == "ring", channels, certs if tls else None)
                    results[(r, "dirtylog")].append(d)
                    line += f"; DirtyLog total {d['total_ms']:7.0f} ms downtime {d['downtime_ms']:6.1f} ms {d['mb']:7.0f} MB invariant {d['invariant']}"
                print(line, flush=True)

    if args.qemu_only:
        return 0
    print()
    print("| guest dirtying | dirty log | transport | QEMU total (fastest) | DirtyLog total | ratio (to the fastest) | QEMU downtime | DirtyLog downtime | ratio | invariant (QEMU / DirtyLog) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    chart_rows = []
    for r in rates:
        q, d = results[(r, "qemu")], results[(r, "dirtylog")]
        qt, dt = statistics.median(x["total_ms"] for x in q), statistics.median(x["total_ms"] for x in d)
        qf = min(x["total_ms"] for x in q)
        qd, dd = statistics.median(x["downtime_ms"] for x in q), statistics.median(x["downtime_ms"] for x in d)
        qi = "ok" if all(x["invariant"] == "ok" for x in q) else "BROKEN"
        di = "ok" if all(x["invariant"] == "ok" for x in d) else "BROKEN"
        rate, mode, transport = r
        label = rate if rate in ("idle", "unthrottled") else f"{int(rate):,} pages/s"
        print(f"| {label} | {'bitmap' if mode == 'log' else 'ring'} | {transport} | {qt / 1000:.2f} s ({qf / 1000:.2f} s) | {dt / 1000:.2f} s | {dt / qt:.2f}x ({dt / qf:.2f}x) |"
              f" {qd:.1f} ms | {dd:.1f} ms | {dd / max(qd, 0.1):.2f}x | {qi} / {di} |")
        chart_rows.append({"guest": label, "dirty_log_mode": "bitmap" if mode == "log" else "ring", "transport": transport,
                           "qemu_total_ms": qt, "dirty_log_total_ms": dt, "qemu_downtime_ms": qd, "dirty_log_downtime_ms": dd})
    if args.chart:
        draw_chart(args.chart, chart_rows, datetime.date.today().isoformat(), machine(), f"compare.py --reps {args.reps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
