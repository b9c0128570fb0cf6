#!/usr/bin/python3
"""sectionfs benchmark: throughput and memory against tmpfs, in one run.

This file owns `make bench`.  It mounts a tmpfs and sectionfs twice (with
`-o passthrough=on` and `-o passthrough=off`), each under one temporary
directory, runs the same fio jobs on each (the targets taking turns, the
median of a few rounds kept), measures what a 1 GiB section costs the
machine in /proc/meminfo, prints one table and saves it.  Every mount it
made is unmounted on the way out, whatever happened.  It needs
root (tmpfs mount, passthrough) and fio; it uses only the standard library.
It must not judge the daemon beyond printing the numbers and the goals
README states beside them: a benchmark informs, the test suite decides.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
GiB = 1 << 30

# Targets in table order: name, column label, how to mount.
TARGETS = [
    ("tmpfs", "tmpfs", None),
    ("pt", "sectionfs passthrough", "on"),
    ("cached", "sectionfs cached", "off"),
]

# (key, label, fio arguments).  Sequential jobs use read()/write() on
# 1 MiB blocks; the mmap jobs touch random 4 KiB pages of a shared map.
WORKLOADS = [
    ("seqwrite", "seq write 1M psync",
     ["--rw=write", "--bs=1m", "--ioengine=psync"]),
    ("seqread", "seq read 1M psync",
     ["--rw=read", "--bs=1m", "--ioengine=psync"]),
    ("mmapread", "mmap rand read 4k",
     ["--rw=randread", "--bs=4k", "--ioengine=mmap"]),
    ("mmapwrite", "mmap rand write 4k",
     ["--rw=randwrite", "--bs=4k", "--ioengine=mmap"]),
]

# The goal README states for the passthrough path.
GOAL_RATIO = 0.90
GOAL_MEM = 1.05


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- mounts

def mounted(path):
    """The fstype mounted at path, or None (from /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) > 4 and fields[4] == path:
                return right.split()[0]
    return None


class Mounts:
    """Every mount this run made, so that the way out can undo them."""

    def __init__(self, base):
        self.base = base
        self.points = []        # (path, daemon Popen or None)

    def tmpfs(self, path, size):
        os.mkdir(path)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size,
                           "bench-tmpfs", path]).returncode != 0:
            raise BenchError("cannot mount a tmpfs on " + path)
        self.points.append((path, None))

    def sectionfs(self, path, daemon, mode):
        os.mkdir(path)
        logf = open(path + ".log", "w")
        proc = subprocess.Popen([daemon, "-f", "-o", "passthrough=" + mode,
                                 path], stdout=logf, stderr=logf,
                                start_new_session=True)
        logf.close()
        self.points.append((path, proc))
        deadline = time.monotonic() + 10
        while not (mounted(path) or "").startswith("fuse"):
            # A daemon that exits never mounts: say why now, not in 10 s.
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("sectionfs -o passthrough=%s did not mount:"
                                 "\n%s" % (mode, tail(path + ".log")))
            time.sleep(0.05)

    def unmount_all(self):
        for path, proc in reversed(self.points):
            if mounted(path):
                cmd = ["fusermount3", "-u", path] if proc else ["umount", path]
                if subprocess.run(cmd).returncode != 0:
                    subprocess.run(["umount", "-l", path])
            if proc:
                stop(proc)
        self.points = []

    def remove_dirs(self):
        """Remove what this run created, one name at a time: never a tree,
        so a mount that would not go away keeps its contents."""
        for name in os.listdir(self.base):
            path = os.path.join(self.base, name)
            try:
                if name.endswith(".log"):
                    os.unlink(path)
                else:
                    os.rmdir(path)
            except OSError as e:
                log("left %s: %s" % (path, e.strerror))
        try:
            os.rmdir(self.base)
        except OSError:
            pass


def stop(proc):
    """Wait for a daemon whose mount is gone; end it by its pid if stuck."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig:
            log("daemon %d did not exit; sending %s" % (proc.pid, sig.name))
            proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass


def tail(path, lines=20):
    try:
        with open(path) as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


# ------------------------------------------------------------ throughput

# The fio job under way; ended first on the way out, since its open file
# would keep a mount busy.
running_job = None


def stop_job():
    if running_job and running_job.poll() is None:
        running_job.terminate()
        running_job.wait()


def fio(directory, args, size, runtime):
    """Run one fio job in directory; returns its bandwidth in bytes/s.

    The job makes passes over the file until runtime is up.  Each pass
    opens (and, for mmap, maps) the file afresh, and fio drops the file's
    page cache at every open: a pass is a new view, so the cached path
    pays for its misses through the daemon each time, as a new reader
    would.
    """
    cmd = ["fio", "--name=bench", "--output-format=json",
           "--filename=" + os.path.join(directory, "bench.dat"),
           "--size=%d" % size, "--numjobs=1", "--iodepth=1",
           "--fallocate=none", "--loops=100000", "--runtime=%d" % runtime
           ] + args
    global running_job
    running_job = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    out, err = running_job.communicate()
    if running_job.returncode != 0:
        raise BenchError("fio failed in %s: %s" % (directory, err))
    running_job = None
    job = json.loads(out[out.index("{"):])["jobs"][0]
    return job["read"]["bw_bytes"] + job["write"]["bw_bytes"]


def throughput(paths, args):
    """Median bandwidth per target and workload.

    The targets take turns, job by job and round by round, so that a
    machine that gets slower or faster during the run moves every column
    alike and the ratios stay fair.
    """
    out = {name: {} for name in paths}
    for key, label, fio_args in WORKLOADS:
        runs = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                data = os.path.join(path, "bench.dat")
                # Writes start on a new file: the first pass allocates.
                if "write" in key and os.path.exists(data):
                    os.unlink(data)
                runs[name].append(fio(path, fio_args, args.size,
                                      args.runtime))
        for name in paths:
            out[name][key] = statistics.median(runs[name])
        log("%-20s %s" % (label, "  ".join(
            "%s %.0f MB/s" % (n, out[n][key] / 1e6) for n in paths)))
    for path in paths.values():
        os.unlink(os.path.join(path, "bench.dat"))
    return out


# ---------------------------------------------------------------- memory

def meminfo():
    vals = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, rest = line.split(":", 1)
            vals[name] = int(rest.split()[0]) * 1024
    return vals


def settled_meminfo(timeout=15):
    """/proc/meminfo once Shmem has stopped moving.

    A section whose name is gone is destroyed when the kernel lets go of
    it (RELEASE and FORGET arrive after close returns), so the memory of
    the previous job may still be leaving; wait for it rather than count
    it against this one.
    """
    deadline = time.monotonic() + timeout
    last = meminfo()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = meminfo()
        if abs(now["Shmem"] - last["Shmem"]) < MiB:
            return now
        last = now
    log("Shmem did not settle; the memory figure may be off")
    return last


def memory(directory, size):
    """Growth of Cached and Shmem per byte for a fresh file of size bytes."""
    path = os.path.join(directory, "section.dat")
    block = os.urandom(MiB)
    before = settled_meminfo()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // MiB):
            os.write(fd, block)
    finally:
        os.close(fd)
    after = settled_meminfo()
    os.unlink(path)
    return {k: (after[k] - before[k]) / size for k in ("Cached", "Shmem")}


# ----------------------------------------------------------------- table

def ratio(value, base):
    return value / base if base else float("nan")


def table(args, results):
    present = [t for t in TARGETS if t[0] in results]
    base = results.get("tmpfs")
    lines = []
    lines.append("sectionfs bench, %s" %
                 datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    lines.append("Linux %s, %s, %d CPUs; file %d MiB; median of %d runs "
                 "of %d s per job; MB/s = 10^6 bytes/s" %
                 (platform.release(), fio_version(), os.cpu_count(),
                  args.size // MiB, args.rounds, args.runtime))
    lines.append("")

    head = "%-20s" % "workload"
    for name, label, _ in present:
        head += " %12s" % (name + " MB/s")
        if base and name != "tmpfs":
            head += " %8s" % "/tmpfs"
    lines.append(head)
    for key, label, _ in WORKLOADS:
        row = "%-20s" % label
        for name, _, _ in present:
            bw = results[name]["bw"][key]
            row += " %12.0f" % (bw / 1e6)
            if base and name != "tmpfs":
                row += " %8.2f" % ratio(bw, base["bw"][key])
        lines.append(row)

    lines.append("")
    lines.append("memory: growth per byte of a %d MiB section "
                 "(/proc/meminfo, written then removed)" %
                 (args.mem_size // MiB))
    lines.append("%-20s %12s %12s" % ("target", "Cached/byte", "Shmem/byte"))
    for name, label, _ in present:
        mem = results[name]["mem"]
        lines.append("%-20s %12.2f %12.2f" %
                     (name, mem["Cached"], mem["Shmem"]))

    if base and "pt" in results:
        lines.append("")
        lines.append(goals(results))
    names = ", ".join("%s = %s" % (n, l) for n, l, _ in present)
    lines.append("")
    lines.append("targets: " + names)
    return "\n".join(lines) + "\n"


def goals(results):
    """Passthrough within 0.9 of tmpfs, <= 1.05 bytes per byte."""
    worst = min(ratio(results["pt"]["bw"][k], results["tmpfs"]["bw"][k])
                for k, _, _ in WORKLOADS)
    mem = results["pt"]["mem"]["Cached"]
    ok = worst >= GOAL_RATIO and mem <= GOAL_MEM
    return ("passthrough goals (ratio >= %.2f, Cached/byte <= %.2f): "
            "worst ratio %.2f, Cached/byte %.2f: %s" %
            (GOAL_RATIO, GOAL_MEM, worst, mem, "met" if ok else "NOT MET"))


def fio_version():
    res = subprocess.run(["fio", "--version"], capture_output=True,
                         text=True)
    return res.stdout.strip()


# ------------------------------------------------------------------ main

def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--daemon", default=os.path.join(
        here, "..", "src", "sectionfs"), help="the sectionfs binary")
    p.add_argument("--output", default=os.path.join(here, "results.txt"),
                   help="where the table is saved (default bench/results.txt)")
    p.add_argument("--targets", default="tmpfs,pt,cached",
                   help="comma list of tmpfs, pt, cached")
    p.add_argument("--size", type=int, default=512 * MiB,
                   help="fio file size in bytes (default 512 MiB)")
    p.add_argument("--mem-size", type=int, default=1 * GiB,
                   help="section size for the memory figure (default 1 GiB)")
    p.add_argument("--runtime", type=int, default=3,
                   help="seconds per fio job (default 3)")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per job and target; the median is kept "
                   "(default 3)")
    return p.parse_args()


def check(args, wanted):
    if os.geteuid() != 0:
        raise BenchError("needs root: it mounts a tmpfs, and passthrough "
                         "needs CAP_SYS_ADMIN")
    if not shutil.which("fio"):
        raise BenchError("fio not found (Debian package fio)")
    if set(wanted) - {t[0] for t in TARGETS}:
        raise BenchError("unknown target in --targets=" + args.targets)
    if ({"pt", "cached"} & set(wanted)) and not os.access(args.daemon,
                                                         os.X_OK):
        raise BenchError("no daemon at %s (build it first)" % args.daemon)


def run(args, wanted, mounts):
    paths = {}
    room = max(args.size, args.mem_size) + 256 * MiB
    for name, label, mode in TARGETS:
        if name not in wanted:
            continue
        paths[name] = os.path.join(mounts.base, name)
        if mode is None:
            mounts.tmpfs(paths[name], room)
        else:
            mounts.sectionfs(paths[name], args.daemon, mode)
        log("%s: %s" % (name, label))
    bw = throughput(paths, args)
    results = {}
    for name, path in paths.items():
        mem = memory(path, args.mem_size)
        log("%s memory: Cached %.2f, Shmem %.2f per byte" %
            (name, mem["Cached"], mem["Shmem"]))
        results[name] = {"bw": bw[name], "mem": mem}
    return results


def main():
    args = parse_args()
    wanted = [t for t in args.targets.split(",") if t]
    # SIGTERM (make killed, CI timeout) must unmount too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        check(args, wanted)
        mounts = Mounts(tempfile.mkdtemp(prefix="sectionfs-bench."))
    except BenchError as e:
        log(str(e))
        return 1
    try:
        results = run(args, wanted, mounts)
    except BenchError as e:
        log(str(e))
        return 1
    finally:
        stop_job()
        mounts.unmount_all()
        mounts.remove_dirs()

    text = table(args, results)
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    log("saved to " + args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
