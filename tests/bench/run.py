# SPDX-License-Identifier: BSL-1.0
"""Runs every childproc benchmark and prints one table: each figure for childproc, its raw
baseline and its peers, the ratios against the project's aims, and whether each aim is met.

    python3 tests/bench/run.py [BUILDDIR=build-bench] [--quick] [--out DIR] [--jobs N] [--from-log LOG]

BUILDDIR is set up (buildtype=release, no tests or examples) and built when it does not exist
yet, and brought up to date when it does. The programs print "FIGURE key=value unit" lines (one
per round) and "NOTE text" lines next to their own tables; this script takes the median of each
key, writes the programs' full output to DIR/log.txt, the table to DIR/results.md (Markdown, for
the README) and a chart of spawn latency against the parent's size to DIR/spawn-vs-rss.svg.
DIR defaults to BUILDDIR/bench-results.

--quick: CHILDPROC_BENCH_QUICK=1 (short runs, as CI), no large parents, one compile per TU.
--from-log: run nothing; remake the table, the Markdown and the chart from an earlier log.txt.
Nothing is downloaded: every peer (Node.js, Python, Boost.Process v2) is optional and skipped
with a note. Python 3.8+ standard library only.
"""
import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent.parent
LARGE_PARENTS_MIB = [2048, 8192]
SPAWN_N, SPAWN_ROUNDS = 300, 7  # bench_spawn_wait's defaults; large parents get N/10


# ---- running things ----

class Results:
    """The figures (median per key), the notes, and the log every line of them is kept in."""

    def __init__(self, log_path=None):
        self.values = {}  # key -> [values]
        self.notes = []
        self.started = None  # when the figures were taken (a RUN line)
        self.log = open(log_path, "w", encoding="utf-8") if log_path else None

    def write(self, text):
        if self.log:
            self.log.write(text)
            self.log.flush()

    def record(self, text):
        """Keeps a program's output: logged, and its FIGURE and NOTE lines collected."""
        self.write(text if text.endswith("\n") else text + "\n")
        for line in text.splitlines():
            m = re.match(r"FIGURE (\S+)=(\S+)", line)
            if m:
                self.values.setdefault(m.group(1), []).append(float(m.group(2)))
            elif line.startswith("NOTE ") and line[5:] not in self.notes:
                self.notes.append(line[5:])
            elif line.startswith("RUN "):
                self.started = line[4:]

    def note(self, text):
        self.record("NOTE " + text)

    def run(self, title, argv, env=None):
        """Runs one benchmark program and records its output."""
        print(f"  {title} ...", end="", flush=True)
        self.write(f"\n===== {title}: {shlex.join(str(a) for a in argv)}\n")
        t0 = time.monotonic()
        p = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                           errors="replace")
        took = time.monotonic() - t0
        self.record(p.stdout)
        if p.returncode != 0:
            self.note(f"{title} failed (exit {p.returncode}): see the log")
            print(f" FAILED (exit {p.returncode}) after {took:.0f} s")
        else:
            print(f" {took:.0f} s")

    def get(self, key):
        v = self.values.get(key)
        return statistics.median(v) if v else None


def ensure_build(build, jobs):
    if not (build / "build.ninja").exists():
        print(f"setting up {build} (buildtype=release)")
        subprocess.run(["meson", "setup", str(build), "--buildtype=release", "-Dtests=false", "-Dexamples=false"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"building {build}")
    cmd = ["meson", "compile", "-C", str(build)] + (["-j", str(jobs)] if jobs else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def mem_available_mib():
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def first_line(argv):
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30).stdout
        return out.strip().splitlines()[0] if out.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---- compile time ----

def compile_flags(build):
    """The compiler and the flags meson gives a TU that uses childproc (those of bench_many)."""
    try:
        entries = json.load(open(build / "compile_commands.json"))
    except (OSError, ValueError):
        return None, None
    for e in entries:
        if e["file"].endswith("many.cpp"):
            args = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
            keep, skip = [], False
            for a in args[1:]:
                if skip:
                    skip = False
                elif a in ("-o", "-MQ", "-MF"):
                    skip = True
                elif a in ("-MD", "-c") or a.endswith("many.cpp") or a.startswith("-DCHILDPROC_BENCH"):
                    pass
                elif a.startswith("-I") and "bench" in a:  # the benchmark's own folders
                    pass
                else:
                    keep.append(a)
            return args[0], keep
    return None, None


def measure_compiles(res, build, quick):
    compiler, flags = compile_flags(build)
    if not compiler:
        res.note("compile time: no compile_commands.json entry for many.cpp")
        return
    tus = {
        "base": "#include <string>\n#include <vector>\nint main() {}\n",
        "childproc": "#include <childproc.hpp>\nint main() {}\n",
        "boost": "#include <boost/process/v2.hpp>\nint main() {}\n",
    }
    reps = 1 if quick else 5
    print(f"  compile time of three TUs, {reps} each ...", end="", flush=True)
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="childproc-compile-") as tmp:
        for name, text in tus.items():
            (Path(tmp) / f"{name}.cpp").write_text(text)
        cmd = lambda name: [compiler] + flags + ["-c", str(Path(tmp) / f"{name}.cpp"), "-o", str(Path(tmp) / f"{name}.o")]
        res.write(f"\n===== compile time: {shlex.join(cmd('childproc'))}\n")
        probe = subprocess.run(cmd("boost"), cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if probe.returncode != 0:
            del tus["boost"]
            res.write(probe.stdout[-4000:])
            res.note("Boost.Process v2 compile time: skipped, <boost/process/v2.hpp> does not compile here")
        for _ in range(reps):  # interleaved, so that drift hits all three alike
            for name in tus:
                t0 = time.perf_counter()
                p = subprocess.run(cmd(name), cwd=build, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                took = time.perf_counter() - t0
                if p.returncode != 0:
                    res.write(p.stdout)
                    res.note(f"compile of the {name} TU failed: see the log")
                    return
                res.record(f"FIGURE compile.{name}={took:.4f} s")
    print(f" {time.monotonic() - t_all:.0f} s")


# ---- the table ----

def fmt(v, unit):
    if v is None:
        return "—"
    if unit == "us":
        return f"{v / 1000:.2f} ms" if v >= 10000 else f"{v:.0f} µs" if v >= 100 else f"{v:.1f} µs"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "MiB":
        return f"{v:.2f} MiB"
    return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"


class Check:
    """One aim: `value` (a ratio, or an absolute figure) against `limit`, `op` '<=' or '>='."""

    def __init__(self, what, value, op, limit, aim, absolute_unit=None):
        self.what, self.value, self.op, self.limit, self.aim, self.unit = what, value, op, limit, aim, absolute_unit

    def ratio_text(self):
        if self.value is None:
            return f"{self.what}: —"
        if self.unit:
            return f"{self.what}: {fmt(self.value, self.unit)}"
        return f"{self.value:.2f}× {self.what}"

    def met(self):
        if self.value is None:
            return None
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def build_rows(r):
    g = r.get
    rows = []

    def rk(a, b):
        """a / b: the median of the per-round ratios when both come from the same rounds (the
        figures of one round run back to back, so the machine's drift between rounds cancels),
        else the ratio of the medians."""
        va, vb = r.values.get(a, []), r.values.get(b, [])
        if len(va) == len(vb) > 1 and all(vb):
            return statistics.median(x / y for x, y in zip(va, vb))
        return ratio(g(a), g(b))

    def row(figure, cp, raw, peers, checks):  # figure: its lines, split at "\n"
        rows.append({"figure": figure.split("\n"), "cp": cp, "raw": raw, "peers": peers, "checks": checks})

    def item(label, key, unit):
        v = g(key)
        return f"{label} {fmt(v, unit)}" if v is not None else None

    def items(*pairs):
        return [x for x in pairs if x]

    us = "us"
    s_ = "spawn.small."
    row("spawn + wait, static tiny child,\nstdio inherited",
        items(item("cp::spawn + wait()", s_ + "cp_spawn", us), item("posix_spawn path", s_ + "cp_spawn_posix", us)),
        items(item("posix_spawn", s_ + "posix_spawn", us), item("vfork+execve", s_ + "vfork", us),
              item("fork+execve", s_ + "fork", us)),
        items(item("Boost.Process v2", s_ + "boost", us), item("Python subprocess.run", s_ + "python_run", us)),
        [Check("vfork+execve", rk(s_ + "cp_spawn", s_ + "vfork"), "<=", 1.05, "≤1.05×"),
         Check("Python subprocess.run", rk(s_ + "cp_spawn", s_ + "python_run"), "<=", 0.9, "≤0.9×"),
         Check("Boost.Process v2", rk(s_ + "cp_spawn", s_ + "boost"), "<=", 0.6, "≤0.6×")])
    row("spawn + wait with uid + gid,\nor kill_on_parent_exit",
        items(item("uid + gid", s_ + "cp_spawn_ids", us), item("kill_on_parent_exit", s_ + "cp_spawn_pdeath", us)),
        items(item("cp::spawn, plain", s_ + "cp_spawn", us)), [],
        [Check("plain (uid + gid)", rk(s_ + "cp_spawn_ids", s_ + "cp_spawn"), "<=", 1.05, "≤1.05×"),
         Check("plain (kill_on_parent_exit)", rk(s_ + "cp_spawn_pdeath", s_ + "cp_spawn"), "<=", 1.05, "≤1.05×")])
    row("the same, async API",
        items(item("cp::spawn + co_await exit()", s_ + "cp_async", us)),
        items(item("posix_spawn", s_ + "posix_spawn", us)), [],
        [Check("posix_spawn", rk(s_ + "cp_async", s_ + "posix_spawn"), "<=", 1.05, "≤1.05×")])
    row("spawn + wait, static tiny child,\noutput captured (3 pipes)",
        items(item("cp::spawn_sync / exec_file", s_ + "cp_spawn_sync", us)),
        items(item("posix_spawn + 3 pipes + poll", s_ + "posix_spawn_pipes", us)),
        items(item("Node spawnSync", s_ + "node_spawnsync", us)),
        [Check("raw", rk(s_ + "cp_spawn_sync", s_ + "posix_spawn_pipes"), "<=", 1.05, "≤1.05×"),
         Check("Node", rk(s_ + "cp_spawn_sync", s_ + "node_spawnsync"), "<=", 0.4, "≤0.4×")])
    row("spawn + wait, child without libc\n(-nostdlib -static)",
        items(item("cp::spawn + wait()", "nolibc.cp_spawn", us), item("posix_spawn path", "nolibc.cp_spawn_posix", us)),
        items(item("vfork+execve", "nolibc.vfork", us), item("posix_spawn", "nolibc.posix_spawn", us),
              item("fork+execve", "nolibc.fork", us)), [],
        [Check("vfork", rk("nolibc.cp_spawn", "nolibc.vfork"), "<=", 1.1, "≤1.1×")])
    for mib in LARGE_PARENTS_MIB:
        p = f"spawn.{mib}M."
        if g(p + "posix_spawn") is None:
            continue
        row(f"spawn + wait from a parent\nthat touched {mib // 1024} GiB",
            items(item("cp::spawn", p + "cp_spawn", us), item("co_await exit()", p + "cp_async", us),
                  item("spawn_sync", p + "cp_spawn_sync", us), item("uid + gid", p + "cp_spawn_ids", us),
                  item("kill_on_parent_exit", p + "cp_spawn_pdeath", us)),
            items(item("posix_spawn", p + "posix_spawn", us), item("vfork+execve", p + "vfork", us),
                  item("fork+execve", p + "fork", us)),
            items(item("Boost.Process v2", p + "boost", us), item("Node spawnSync", p + "node_spawnsync", us),
                  item("Python subprocess.run", p + "python_run", us)),
            [Check(f"small parent ({name})", rk(p + key, s_ + key), "<=", 1.1, "≤1.1×")
             for name, key in (("spawn", "cp_spawn"), ("async", "cp_async"), ("sync", "cp_spawn_sync"),
                               ("uid + gid", "cp_spawn_ids"), ("kill_on_parent_exit", "cp_spawn_pdeath"))])
    row("children per second,\n8 in flight",
        items(item("cp::spawn + co_await exit()", "many.cp_async", "/s")),
        items(item("posix_spawn + wait(2)", "many.raw", "/s")),
        items(item("Node spawn + 'exit'", "many.node", "/s")),
        [Check("raw", rk("many.cp_async", "many.raw"), ">=", 0.95, "≥0.95×"),
         Check("Node", rk("many.cp_async", "many.node"), ">=", 5, "≥5×")])
    for label, key in (("stream::read_some", "stream.cp_read_some"), ("co_await async_read_some", "stream.cp_async")):
        row(f"stdout to the parent, the pipe\ngrown as it fills ({label})",
            items(item(label, key, "GB/s")),
            items(item("read(2) loop, 1 MiB pipe", "stream.raw_1m", "GB/s"), item("64 KiB pipe", "stream.raw", "GB/s")),
            items(item("Node 'data'", "stream.node", "GB/s")),
            [Check("raw, 1 MiB pipe", rk(key, "stream.raw_1m"), ">=", 0.9, "≥0.9×"),
             Check("Node", rk(key, "stream.node"), ">=", 1.0, "≥1×")])
    for label, key in (("stream::read_some", "stream.cp_socket_read_some"),
                       ("co_await async_read_some", "stream.cp_socket_async")):
        row(f"stdout to the parent,\nstdio socket_pipe ({label})",
            items(item(label, key, "GB/s")),
            items(item("read(2) loop, socketpair", "stream.raw_socket", "GB/s")),
            items(item("Node 'data'", "stream.node", "GB/s")),
            [Check("raw socketpair", rk(key, "stream.raw_socket"), ">=", 0.9, "≥0.9×"),
             Check("Node", rk(key, "stream.node"), ">=", 1.0, "≥1×")])
    row("stdout lines of 32 bytes\n(no aim)",
        items(item("co_await read_line", "lines.cp_read_line", "M/s")),
        items(item("read(2) + memchr", "lines.raw", "M/s")),
        items(item("Node readline", "lines.node", "M/s")),
        [Check("raw", rk("lines.cp_read_line", "lines.raw"), ">=", 0, ""),
         Check("Node", rk("lines.cp_read_line", "lines.node"), ">=", 0, "")])
    row("channel: 32-byte messages,\none way",
        items(item("send() + receive()", "channel.small.cp", "M/s")),
        items(item("socketpair framing", "channel.small.raw", "M/s")),
        items(item("Node fork/send (json)", "channel.small.node", "M/s")),
        [Check("rate", g("channel.small.cp"), ">=", 10, "≥10 M/s", "M/s"),
         Check("Node", rk("channel.small.cp", "channel.small.node"), ">=", 50, "≥50×")])
    row("channel: round trip,\n32-byte messages",
        items(item("send() + co_await receive()", "channel.rtt.cp", us)),
        items(item("socketpair framing", "channel.rtt.raw", us)),
        items(item("Node", "channel.rtt.node", us)),
        [Check("raw", rk("channel.rtt.cp", "channel.rtt.raw"), "<=", 1.1, "≤1.1×")])
    row("json channel with Node,\n32-byte messages, one way",
        items(item("C++ parent -> Node child", "channel.small.cp_node", "M/s"),
              item("Node parent -> C++ child", "channel.small.node_cp", "M/s")),
        [],
        items(item("Node -> Node", "channel.small.node", "M/s")),
        [Check("Node -> Node (C++ parent)", rk("channel.small.cp_node", "channel.small.node"), ">=", 1.0, "≥1×"),
         Check("Node -> Node (C++ child)", rk("channel.small.node_cp", "channel.small.node"), ">=", 1.0, "≥1×")])
    row("json channel with Node,\nround trip, 32-byte messages",
        items(item("C++ parent, Node child", "channel.rtt.cp_node", us),
              item("Node parent, C++ child", "channel.rtt.node_cp", us)),
        [],
        items(item("Node <-> Node", "channel.rtt.node", us)),
        [Check("Node <-> Node (C++ parent)", rk("channel.rtt.cp_node", "channel.rtt.node"), "<=", 0.7, "≤0.7×"),
         Check("Node <-> Node (C++ child)", rk("channel.rtt.node_cp", "channel.rtt.node"), "<=", 0.7, "≤0.7×")])
    row("channel: 1 MiB messages,\none way",
        items(item("co_await send_async()", "channel.big.cp", "GB/s")),
        items(item("socketpair writev", "channel.big.raw", "GB/s")),
        items(item("Node", "channel.big.node", "GB/s")),
        [Check("raw", rk("channel.big.cp", "channel.big.raw"), ">=", 0.85, "≥0.85×")])
    def cost_ratio(a, b):  # (a - base) / (b - base), per repetition, as rk
        va, vb, vbase = (r.values.get(k, []) for k in (a, b, "compile.base"))
        if not va or len(va) != len(vb) or len(va) != len(vbase):
            return None
        pairs = [(x - z) / (y - z) for x, y, z in zip(va, vb, vbase) if y > z]
        return statistics.median(pairs) if pairs else None
    row("compile a TU that includes\nthe header (g++ -c)",
        items(item("<childproc.hpp>", "compile.childproc", "s")),
        items(item("<string> + <vector>", "compile.base", "s")),
        items(item("<boost/process/v2.hpp>", "compile.boost", "s")),
        [Check("Boost (above <string>+<vector>)", cost_ratio("compile.childproc", "compile.boost"), "<=", 0.5, "≤0.5×")])
    live = g("live.count")
    row(f"parent RSS growth,\n{live:.0f} live children" if live else "parent RSS growth,\nlive children",
        items(item("cp::spawn, a cp::process each", "live.cp", "MiB")),
        items(item("posix_spawn, pid + pipe each", "live.raw", "MiB")), [],
        [Check("per 1,000", g("live.cp") * 1000 / live if live and g("live.cp") is not None else None, "<=", 16,
               "≤16 MiB", "MiB")])
    return rows


def check_verdict(c):
    if not c.aim or c.aim == "(no aim)":
        return "—"
    state = c.met()
    return "not measured" if state is None else "met" if state else "MISSED"


def table_cells(rows):
    header = ["figure", "childproc", "raw baseline", "peers", "ratio", "aim", "verdict"]
    out = []
    for r in rows:
        checks = r["checks"]
        out.append([r["figure"], r["cp"] or ["—"], r["raw"] or ["—"], r["peers"] or ["—"],
                    [c.ratio_text() for c in checks], [c.aim or "—" for c in checks], [check_verdict(c) for c in checks]])
    return header, out


def text_table(header, cells):
    widths = [max([len(h)] + [len(line) for row in cells for line in row[i]]) for i, h in enumerate(header)]
    sep = "+".join("-" * (w + 2) for w in widths)
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), sep]
    for row in cells:
        height = max(len(c) for c in row)
        for k in range(height):
            lines.append(" | ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(row, widths)))
        lines.append(sep)
    return "\n".join(lines)


def md_escape(s):
    """Markdown table text: a bare <childproc.hpp> would be taken for an HTML tag."""
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def markdown_table(header, cells):
    esc = md_escape
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in cells:
        lines.append("| " + " | ".join("<br>".join(esc(x) for x in c) for c in row) + " |")
    return "\n".join(lines)


# ---- the machine ----

def machine(build, compiler):
    info = {}
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
    except OSError:
        cpu = None
    info["CPU"] = f"{cpu or platform.processor() or platform.machine()}"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["cores"] = f"{usable} usable of {os.cpu_count()} online"
    mem = None
    try:
        mem = next(int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    info["memory"] = f"{mem / 1024:.1f} GiB" if mem else "?"
    info["kernel"] = f"{platform.system()} {platform.release()} {platform.machine()}"
    libc = " ".join(platform.libc_ver()) if platform.libc_ver()[0] else "?"
    try:
        thp = re.search(r"\[(\w+)\]", open("/sys/kernel/mm/transparent_hugepage/enabled").read()).group(1)
    except (OSError, AttributeError):
        thp = "?"
    info["libc, THP"] = f"{libc}, transparent huge pages: {thp}"
    comp = first_line([compiler, "--version"]) if compiler else None
    buildtype = "?"
    try:
        opts = json.loads(subprocess.run(["meson", "introspect", str(build), "--buildoptions"], stdout=subprocess.PIPE,
                                         text=True).stdout)
        buildtype = next(o["value"] for o in opts if o["name"] == "buildtype")
    except (OSError, ValueError, StopIteration):
        pass
    info["compiler"] = f"{comp or compiler or '?'} (meson buildtype={buildtype})"
    others = [first_line(["clang++", "--version"])] if shutil.which("clang++") and "clang" not in (comp or "") else []
    if others and others[0]:
        info["compiler"] += f"; also installed: {others[0]}"
    peers = []
    if shutil.which("node"):
        peers.append(f"Node.js {first_line(['node', '--version'])}")
    if shutil.which("python3"):
        peers.append(first_line(["python3", "--version"]))
    boost = None
    for inc in ("/usr/include", "/usr/local/include"):
        try:
            m = re.search(r'#define BOOST_LIB_VERSION "([^"]+)"', open(f"{inc}/boost/version.hpp").read())
            if m and os.path.exists(f"{inc}/boost/process/v2.hpp"):
                boost = "Boost.Process v2 (Boost " + m.group(1).replace("_", ".") + ")"
                break
        except OSError:
            pass
    if boost:
        peers.append(boost)
    info["peers"] = ", ".join(p for p in peers if p) or "none found"
    return info


# ---- the chart ----

SERIES = [  # key, label, colour, fork-based?
    ("cp_spawn", "childproc cp::spawn", "#d62728", False),
    ("posix_spawn", "raw posix_spawn", "#1f77b4", False),
    ("vfork", "raw vfork + execve", "#17becf", False),
    ("fork", "raw fork + execve", "#7f7f7f", True),
    ("boost", "Boost.Process v2 (default launcher: fork)", "#9467bd", True),
    ("node_spawnsync", "Node.js spawnSync (libuv: fork)", "#2ca02c", True),
    ("python_run", "Python subprocess.run (defaults: vfork)", "#ff7f0e", False),
]


def svg_chart(r, sizes, subtitle):
    import math
    labels = ["small"] + [f"{m}M" for m in sizes]
    xnames = ["as started"] + [f"{m // 1024} GiB touched" if m % 1024 == 0 else f"{m} MiB touched" for m in sizes]
    series = []
    for key, name, colour, forky in SERIES:
        pts = [(i, r.get(f"spawn.{lab}.{key}")) for i, lab in enumerate(labels)]
        pts = [(i, v) for i, v in pts if v]
        if pts:
            series.append((name, colour, forky, key == "cp_spawn", pts))
    vals = [v for s in series for _, v in s[4]]
    if not vals:
        return None
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    hi = max(hi, lo + 1)
    W, H, L, R, T, B = 900, 440, 80, 560, 60, 370
    x = lambda i: L + (R - L) * (i + 0.5) / len(labels)
    y = lambda v: B - (B - T) * (math.log10(v) - lo) / (hi - lo)
    esc = lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="24" font-size="15" font-weight="bold">spawn + wait of a tiny child against the parent\'s size</text>',
         f'<text x="{L}" y="42" fill="#555">{esc(subtitle)}</text>']
    for d in range(lo, hi + 1):  # log grid: 1, 2, 5 per decade
        for m in (1, 2, 5):
            v = m * 10 ** d
            if v > 10 ** hi:
                break
            yy = y(v)
            o.append(f'<line x1="{L}" y1="{yy:.1f}" x2="{R}" y2="{yy:.1f}" stroke="{"#ccc" if m == 1 else "#eee"}"/>')
            text = f"{v / 1000:g} ms" if v >= 1000 else f"{v:g} µs"
            o.append(f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end" fill="#444">{text}</text>')
    o.append(f'<line x1="{L}" y1="{B}" x2="{R}" y2="{B}" stroke="#333"/><line x1="{L}" y1="{T}" x2="{L}" y2="{B}" stroke="#333"/>')
    for i, name in enumerate(xnames):
        o.append(f'<text x="{x(i):.1f}" y="{B + 20}" text-anchor="middle">{esc(name)}</text>')
    o.append(f'<text x="{(L + R) / 2}" y="{B + 42}" text-anchor="middle" fill="#444">parent process (resident memory)</text>')
    o.append(f'<text transform="translate(18 {(T + B) / 2}) rotate(-90)" text-anchor="middle" fill="#444">'
             'time per spawn + wait (log scale)</text>')
    for name, colour, forky, ours, pts in series:
        width = 3.5 if ours else 2
        dash = ' stroke-dasharray="6 4"' if forky else ""
        path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in pts)
        o.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{width}"{dash}/>')
        for i, v in pts:
            o.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{4.5 if ours else 3.5}" fill="{colour}">'
                     f'<title>{esc(name)}: {fmt(v, "us")}</title></circle>')
    ly = T + 8
    o.append(f'<text x="{R + 24}" y="{ly}" font-weight="bold">dashed: fork-based</text>')
    for name, colour, forky, ours, pts in series:
        ly += 24
        dash = ' stroke-dasharray="6 4"' if forky else ""
        o.append(f'<line x1="{R + 24}" y1="{ly - 4}" x2="{R + 52}" y2="{ly - 4}" stroke="{colour}" '
                 f'stroke-width="{3.5 if ours else 2}"{dash}/>')
        last = fmt(pts[-1][1], "us")
        bold = ' font-weight="bold"' if ours else ""
        o.append(f'<text x="{R + 58}" y="{ly}"{bold}>{esc(name)}</text>')
        o.append(f'<text x="{R + 58}" y="{ly + 13}" fill="#666" font-size="11">{esc(xnames[pts[-1][0]])}: {last}</text>')
        ly += 8
    o.append("</svg>")
    return "\n".join(o) + "\n"


# ---- main ----

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builddir", nargs="?", default="build-bench")
    ap.add_argument("--quick", action="store_true", help="short runs (CHILDPROC_BENCH_QUICK=1), no large parents")
    ap.add_argument("--out", help="where results.md, spawn-vs-rss.svg and log.txt go (BUILDDIR/bench-results)")
    ap.add_argument("--jobs", type=int, help="meson compile -j")
    ap.add_argument("--from-log", metavar="LOG", help="run nothing: make the table and chart from an earlier log.txt")
    a = ap.parse_args()
    build = Path(a.builddir).resolve()
    out = Path(a.out).resolve() if a.out else build / "bench-results"
    out.mkdir(parents=True, exist_ok=True)
    if a.from_log:
        res = Results()
        res.record(Path(a.from_log).read_text(encoding="utf-8", errors="replace"))
        quick = bool(res.started and res.started.endswith(" quick"))
    else:
        ensure_build(build, a.jobs)
        res = Results(out / "log.txt")
        collect(res, build, a.quick)
        quick = a.quick
    render(res, build, out, quick)
    return 0


def collect(res, build, quick):
    bench = build / "tests" / "bench"
    env = dict(os.environ)
    if quick:
        env["CHILDPROC_BENCH_QUICK"] = "1"
    else:
        env.pop("CHILDPROC_BENCH_QUICK", None)
    sizes = [] if quick else list(LARGE_PARENTS_MIB)
    avail = mem_available_mib()
    while sizes and avail is not None and sizes[-1] + 1024 > avail:
        res.note(f"parent of {sizes[-1]} MiB skipped: MemAvailable is {avail} MiB")
        sizes.pop()

    started = time.monotonic()
    res.record(f"RUN {time.strftime('%Y-%m-%d %H:%M')}" + (" quick" if quick else ""))
    print("running the benchmarks (their full output goes to the log):")
    res.run("spawn + wait" + (f", parents of {', '.join(map(str, sizes))} MiB" if sizes else ""),
            [bench / "bench_spawn_wait"] + (["--parent-mib", ",".join(map(str, sizes))] if sizes else []), env=env)
    if sizes:  # the peers from large parents: their own processes, grown in place (one at a time: memory)
        n_big, sizes_arg = str(max(3, SPAWN_N // 10)), ",".join(map(str, sizes))
        tiny = bench / "bench_tiny"
        if shutil.which("node"):
            res.run("Node.js spawnSync from large parents",
                    ["node", BENCH_DIR / "spawn_peer.js", "spawnsync", tiny, n_big, SPAWN_ROUNDS, sizes_arg], env=env)
        if shutil.which("python3"):
            res.run("Python subprocess.run from large parents",
                    ["python3", BENCH_DIR / "spawn_peer.py", "run", tiny, n_big, SPAWN_ROUNDS, sizes_arg], env=env)
    res.run("children per second, live children", [bench / "bench_many"], env=env)
    res.run("streaming", [bench / "bench_stream"], env=env)
    res.run("channel", [bench / "bench_channel"], env=env)
    measure_compiles(res, build, quick)
    print(f"done in {time.monotonic() - started:.0f} s\n")


def render(res, build, out, quick):
    compiler, _ = compile_flags(build)
    info = machine(build, compiler)
    sizes = [m for m in LARGE_PARENTS_MIB if res.get(f"spawn.{m}M.posix_spawn") is not None]
    header, cells = table_cells(build_rows(res))
    head_lines = [f"{k}: {v}" for k, v in info.items()]
    head_lines.append("run: " + ("quick (CHILDPROC_BENCH_QUICK=1)" if quick else "full") +
                      f", {(res.started or '?').split()[0]} {(res.started or '? ?').split()[1]}; medians over rounds; "
                      "ratios are childproc / the other")
    notes = res.notes + [
        "spawn: µs per spawn + wait. A large parent's rounds run in the same process as the small one's, interleaved "
        "(bench_spawn_wait marks its memory beyond the current size MADV_DONTFORK); Node and Python touch their own.",
        "ratios: the median of the per-round ratios where both figures ran in the same rounds (back to back, so drift "
        "between rounds cancels), else the ratio of the medians.",
        "compile: one `-c` of the TU with the flags meson uses for the benchmarks; the Boost aim compares the cost above "
        "the <string> + <vector> TU.",
    ]
    print("\n".join(head_lines) + "\n")
    print(text_table(header, cells))
    print("\nnotes:\n" + "\n".join(f"- {n}" for n in notes))
    md = ["## Benchmark results", "", *[f"- {md_escape(l)}" for l in head_lines], "", markdown_table(header, cells), "",
          "Notes:", "", *[f"- {md_escape(n)}" for n in notes], ""]
    (out / "results.md").write_text("\n".join(md), encoding="utf-8")
    written = [out / "results.md"]
    svg = svg_chart(res, sizes, f"{info['CPU']}, {info['cores']}, {info['kernel']}")
    if svg:
        (out / "spawn-vs-rss.svg").write_text(svg, encoding="utf-8")
        written.append(out / "spawn-vs-rss.svg")
    if res.log:
        written.append(Path(res.log.name))
    print("\nwritten: " + ", ".join(map(str, written)))


if __name__ == "__main__":
    sys.exit(main())
