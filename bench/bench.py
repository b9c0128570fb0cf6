#!/usr/bin/python3
"""sectionfs benchmark: data, names and memory against tmpfs, in one run.

This file owns `make bench`.  It mounts a tmpfs and sectionfs twice (with
`-o passthrough=on` and `-o passthrough=off`), and where the kernel has
FUSE over io_uring twice more with `-o io_uring=on` (turning the fuse
module's enable_uring on for the run, and back after), and the cached path
twice more with `-o writeback_cache` (once as mounted, once with the
mount's dirty-page share raised), each under one temporary directory, and
runs the same work on each, the targets taking
turns and the median (or, with --estimator=best, the best) of a few
rounds kept.  With --baseline PATH, another sectionfs binary (an older
build) is mounted beside them as pt-base and cached-base, with the options
of the passthrough and cached targets, and takes its turns like them.
The work:

  - fio on one file: sequential read and write (1 MiB, psync), random read
    and write (4 KiB, psync), random read and write through a shared mmap
    (4 KiB), fallocate of a new file (1 MiB steps), each with one job and
    with two; with --caller-cgroup, fio runs in another cgroup than the
    daemons, whose memory sectionfs then charges there;
  - metabench (bench/metabench.c): create, stat, open+close, readdir,
    rename and unlink of many names, with one thread and with two;
  - memory: what a 1 GiB section costs the machine per byte in
    /proc/meminfo, and what 100,000 empty sections cost, in the kernel's
    slab and in the daemon's own resident memory (each section holds an
    fd in the daemon: where this process may not raise the daemon's open
    file limit that far, as many as the limit allows).  The process
    started is a keeper that serves nothing; its child, the server,
    serves, and maps the record of the namespace (shared memory).  Each
    is read from /proc/PID/status: the server's private (RssAnon) and
    shared (RssShmem) memory, the keeper's VmRSS, the VmRSS of both (the
    daemon), and slab and daemon together (the machine).  A build with
    no keeper is its own server.

It prints one table (MB/s or ops/s per row and target, and the ratio of
each sectionfs data path to tmpfs) and, with --baseline, this build's
ratios to the baseline's, with goals held against it; it saves the table
as text and the raw rounds as JSON beside it, and draws the ratios as a
PNG bar chart when matplotlib or gnuplot is installed.  Every mount it
made is unmounted on the way out, whatever happened.  It needs root (tmpfs
mount, passthrough), fio, prlimit and a built metabench; it uses only the
standard library, and matplotlib if present.  It must not judge the
daemon beyond printing the numbers and, beside them, the project's
performance goals: a benchmark informs, the test suite decides.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
GiB = 1 << 30

# Targets in table order: name, column label, and for sectionfs the
# passthrough= and io_uring= options it is mounted with.
TARGETS = [
    ("tmpfs", "tmpfs", None, None),
    ("pt", "passthru", "on", "off"),
    ("cached", "cached", "off", "off"),
    ("pt-uring", "pt+uring", "on", "on"),
    ("cached-uring", "ca+uring", "off", "on"),
    ("cached-wb", "ca+wb", "off", "off"),
    ("cached-wb100", "ca+wb100", "off", "off"),
    ("pt-base", "pt@base", "on", "off"),
    ("cached-base", "ca@base", "off", "off"),
]
# Targets mounted from the --baseline binary, each with the target of this
# build it is held against (the same options, the other binary).
BASELINE = {"pt-base": "pt", "cached-base": "cached"}
# Further -o options of a target, and the dirty-page share (max_ratio, in
# percent) set on its mount's bdi; the kernel limits a FUSE mount to 1%.
EXTRA_OPTIONS = {"cached-wb": "writeback_cache",
                 "cached-wb100": "writeback_cache"}
BDI_MAX_RATIO = {"cached-wb100": 100}
SECTIONFS = [t[0] for t in TARGETS if t[2]]
URING = [t[0] for t in TARGETS if t[3] == "on"]
URING_PARAM = "/sys/module/fuse/parameters/enable_uring"


def daemon_of(args, name):
    """The sectionfs binary target name is mounted with."""
    return args.baseline if name in BASELINE else args.daemon


# (key, label, fio arguments).  Each write row starts on a new file, so its
# first pass allocates, as a program filling a new section does; each read
# row reads a file written in full with write(2) just before (fill()).
# The mmap rows touch random 4 KiB pages of a MAP_SHARED view.
WORKLOADS = [
    ("seqwrite", "seq write 1M psync",
     ["--rw=write", "--bs=1m", "--ioengine=psync"]),
    ("seqread", "seq read 1M psync",
     ["--rw=read", "--bs=1m", "--ioengine=psync"]),
    ("randwrite", "rand write 4k psync",
     ["--rw=randwrite", "--bs=4k", "--ioengine=psync"]),
    ("randread", "rand read 4k psync",
     ["--rw=randread", "--bs=4k", "--ioengine=psync"]),
    ("mmapwrite", "mmap rand write 4k",
     ["--rw=randwrite", "--bs=4k", "--ioengine=mmap"]),
    ("mmapread", "mmap rand read 4k",
     ["--rw=randread", "--bs=4k", "--ioengine=mmap"]),
    ("falloc", "fallocate 1M",
     ["--rw=write", "--bs=1m", "--ioengine=falloc"]),
]

# fio jobs per row.  Two jobs share the one file, as two processes sharing
# a section do: the sequential jobs each take their own half of it, the
# random ones range over all of it.
JOBS = (1, 2)

# metabench phases, in the order it prints them; threads per row.
PHASES = ["create", "stat", "open+close", "readdir", "rename", "unlink"]
THREADS = (1, 2)
LISTINGS = 4            # listings of the whole directory per run

# Goals printed beside the numbers: worst ratio to tmpfs on each data path,
# bytes of memory per byte on the passthrough path, names, daemon memory.
GOAL_PT = 0.95
GOAL_CACHED = 0.5
GOAL_NAMES = 0.3
GOAL_MEM = 1.02
GOAL_RSS = 300
# Goals against the --baseline binary, as ratios this build / baseline:
# data as before (within noise), names, memory per empty section (the
# daemon's processes, and the machine's: slab and daemon).
GOAL_BASE_DATA = 0.95
GOAL_BASE_NAMES = 0.90
GOAL_BASE_MEM = 1.10


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


def set_max_ratio(path, percent):
    """Let the mount at path hold up to percent of the machine's dirty
    pages (its bdi goes with the mount, so nothing is restored)."""
    dev = os.stat(path).st_dev
    knob = "/sys/class/bdi/%d:%d/max_ratio" % (os.major(dev), os.minor(dev))
    with open(knob, "w") as f:
        f.write("%d\n" % percent)


class Mounts:
    """Every mount this run made, so that the way out can undo them."""

    def __init__(self, base):
        self.base = base
        self.points = []        # (path, daemon Popen or None)

    def tmpfs(self, path):
        """Mount a tmpfs as /dev/shm is: no size=, so half of memory.  A
        cap just above the bench's file measured some 15% slower on
        sequential writes than that, a cost no user of /dev/shm pays."""
        os.mkdir(path)
        if subprocess.run(["mount", "-t", "tmpfs", "bench-tmpfs",
                           path]).returncode != 0:
            raise BenchError("cannot mount a tmpfs on " + path)
        self.points.append((path, None))

    def sectionfs(self, path, daemon, target, nofile=None):
        """Mount sectionfs on path; returns the daemon's Popen.

        With nofile, the daemon starts with that hard (and soft) limit on
        open files: every section holds an fd in the daemon, which raises
        its soft limit only as far as the hard limit it was given.
        prlimit execs the daemon, so the pid is the process started: the
        keeper, whose child is the server (daemon_pids()).
        """
        name, _, mode, uring = target
        os.mkdir(path)
        opts = "passthrough=%s,io_uring=%s" % (mode, uring)
        if name in EXTRA_OPTIONS:
            opts += "," + EXTRA_OPTIONS[name]
        cmd = [daemon, "-f", "-o", opts, path]
        if nofile:
            cmd = ["prlimit", "--nofile=%d:%d" % (nofile, nofile),
                   "--"] + cmd
        logf = open(path + ".log", "w")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=logf,
                                start_new_session=True)
        logf.close()
        self.points.append((path, proc))
        deadline = time.monotonic() + 10
        while not (mounted(path) or "").startswith("fuse"):
            # A daemon that exits never mounts: say why now, not in 10 s.
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("sectionfs %s did not mount:\n%s" %
                                 (" ".join(cmd[-3:-1]), tail(path + ".log")))
            time.sleep(0.05)
        if name in BDI_MAX_RATIO:
            set_max_ratio(path, BDI_MAX_RATIO[name])
        return proc

    def unmount(self, path):
        for i, (p, proc) in enumerate(self.points):
            if p == path:
                del self.points[i]
                unmount_one(p, proc)
                return

    def unmount_all(self):
        for path, proc in reversed(self.points):
            unmount_one(path, proc)
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


def unmount_one(path, proc):
    if mounted(path):
        cmd = ["fusermount3", "-u", path] if proc else ["umount", path]
        if subprocess.run(cmd).returncode != 0:
            subprocess.run(["umount", "-l", path])
    if proc:
        stop(proc)


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


# ------------------------------------------------------------- children

# The fio or metabench run under way; ended first on the way out, since
# its open files would keep a mount busy.
running_job = None


def stop_job():
    if running_job and running_job.poll() is None:
        running_job.terminate()
        running_job.wait()


def run_child(cmd, what):
    """Run cmd to the end; returns its stdout, or raises with its stderr."""
    global running_job
    running_job = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    out, err = running_job.communicate()
    code = running_job.returncode
    running_job = None
    if code != 0:
        raise BenchError("%s failed (exit %d): %s" % (what, code,
                                                      err.strip()))
    return out


def turns(paths, rnd):
    """The targets in this round's order: each round starts one further
    along, so that no target always runs first after a pause."""
    names = list(paths)
    k = rnd % len(names)
    return names[k:] + names[:k]


# ------------------------------------------------------------ throughput

def fio(path, fio_args, jobs, size, runtime, caller_cgroup=None):
    """Run one fio row on the file at path; returns bytes/s (all jobs).
    With caller_cgroup, fio runs in that cgroup (--caller-cgroup).

    invalidate=0: fio's default drops the file's page cache at every open
    (POSIX_FADV_DONTNEED).  tmpfs has no backing store, so there it is a
    no-op, and a program using sections never does it either; on the
    cached path it would make every pass fetch all its bytes through the
    daemon again, a cost no real reader of a section that is already in
    memory pays.  What the kernel itself keeps or drops at open is the
    daemon's choice and is measured as it is.
    """
    if jobs > 1 and ("--rw=write" in fio_args or "--rw=read" in fio_args):
        part = ["--size=%d" % (size // jobs),
                "--offset_increment=%d" % (size // jobs)]
    else:
        part = ["--size=%d" % size]
    cmd = ["fio", "--name=bench", "--output-format=json",
           "--filename=" + path, "--numjobs=%d" % jobs, "--group_reporting",
           "--iodepth=1", "--invalidate=0", "--fallocate=none",
           "--time_based", "--runtime=%dms" % (runtime * 1000)]
    cmd += part + fio_args
    if caller_cgroup:
        cmd = ["sh", "-c", 'echo $$ > "$0" && exec "$@"',
               os.path.join(caller_cgroup, "cgroup.procs")] + cmd
    out = run_child(cmd, "fio in " + os.path.dirname(path))
    job = json.loads(out[out.index("{"):])["jobs"][0]
    return job["read"]["bw_bytes"] + job["write"]["bw_bytes"]


def fill(path, size):
    """Make path a file of size bytes, every page written with write(2),
    as a program fills a section before reading it.

    Written afresh before each read row, whatever the row before left:
    fio lays out the file of a write row with write(2) and then drops its
    page cache (POSIX_FADV_DONTNEED), a no-op on tmpfs and through
    passthrough but not on the cached path, where the next read row would
    otherwise start cold or warm depending on which row ran before it.
    """
    block = os.urandom(MiB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size // MiB):
            os.write(fd, block)
    finally:
        os.close(fd)


def throughput(paths, args, raw):
    """Bandwidth per target and row, the figure kept of its rounds (see
    --estimator); raw gets every round."""
    out = {name: {} for name in paths}
    for key, label, fio_args in WORKLOADS:
        writes = "--rw=write" in fio_args or "--rw=randwrite" in fio_args
        for jobs in JOBS:
            row = "%s/%d" % (key, jobs)
            runs = {name: [] for name in paths}
            if not writes:
                for path in paths.values():
                    fill(os.path.join(path, "bench.dat"), args.size)
            for rnd in range(args.rounds):
                for name in turns(paths, rnd):
                    data = os.path.join(paths[name], "bench.dat")
                    if writes and os.path.exists(data):
                        os.unlink(data)
                    runs[name].append(fio(data, fio_args, jobs, args.size,
                                          args.runtime, args.caller_cgroup))
            for name in paths:
                out[name][row] = args.estimate(runs[name])
                raw.setdefault(name, {})[row] = runs[name]
            log("%-28s %s" % (data_label(label, jobs), "  ".join(
                "%s %.0f" % (n, out[n][row] / 1e6) for n in paths)))
    for path in paths.values():
        os.unlink(os.path.join(path, "bench.dat"))
    return out


def data_label(label, jobs):
    return "%s, %d job%s" % (label, jobs, "s" if jobs > 1 else "")


# ----------------------------------------------------------------- names

def metabench(paths, args, raw):
    """Operations per second per target, phase and thread count, the
    figure kept of their rounds; raw gets every round."""
    out = {name: {} for name in paths}
    for threads in THREADS:
        runs = {name: {p: [] for p in PHASES} for name in paths}
        for rnd in range(args.rounds):
            for name in turns(paths, rnd):
                top = os.path.join(paths[name], "names")
                os.mkdir(top)
                text = run_child([args.metabench, top, str(threads),
                                  str(args.files), str(LISTINGS)],
                                 "metabench in " + top)
                os.rmdir(top)
                for line in text.splitlines():
                    if line.startswith("#") or not line.strip():
                        continue
                    phase, _, _, rate = line.split()
                    runs[name][phase].append(float(rate))
        for name in paths:
            for phase in PHASES:
                row = "%s/%d" % (phase, threads)
                out[name][row] = args.estimate(runs[name][phase])
                raw.setdefault(name, {})[row] = runs[name][phase]
        for phase in PHASES:
            row = "%s/%d" % (phase, threads)
            log("%-28s %s" % (names_label(phase, threads), "  ".join(
                "%s %.0f" % (n, out[n][row]) for n in paths)))
    return out


def names_label(phase, threads):
    return "%s, %d thread%s" % (phase, threads, "s" if threads > 1 else "")


# ---------------------------------------------------------------- memory

def meminfo():
    vals = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, rest = line.split(":", 1)
            vals[name] = int(rest.split()[0]) * 1024
    return vals


# /proc/slabinfo's caches behind a /proc/PID/fd/N inode: its inode, its
# dentry and a security module's blob for it.
PROC_FD_CACHES = ("proc_inode_cache", "dentry", "lsm_inode_cache")


def slab_less_proc():
    """Slab in bytes, less the /proc inodes of open descriptors.

    Whatever walks /proc/PID/fd (lsof, a monitoring agent: one machine
    measured walks every process's every few seconds) gives each
    descriptor a /proc inode and dentry, about 2 KiB, reclaimable and
    made again at the next walk.  Every section holds a descriptor in
    the daemon (in both of its processes with a keeper), so whether such
    a walk fell between two readings moved the slab per section by
    three quarters of what a section itself costs.  Those are taken out:
    per proc inode, one object of each of PROC_FD_CACHES.
    """
    objs, size = {}, {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f.readlines()[2:]:
                fields = line.split()
                objs[fields[0]] = int(fields[2])
                size[fields[0]] = int(fields[3])
    except OSError:
        return meminfo()["Slab"]
    proc = objs.get("proc_inode_cache", 0)
    return meminfo()["Slab"] - proc * sum(size.get(c, 0)
                                          for c in PROC_FD_CACHES)


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
    before = settled_meminfo()
    fill(path, size)
    after = settled_meminfo()
    os.unlink(path)
    return {k: (after[k] - before[k]) / size for k in ("Cached", "Shmem")}


# The fields of /proc/PID/status the memory rows read: all resident
# memory, its private (anonymous) part, and its shared memory part, where
# the server's record of the namespace (a memfd it maps) lies.
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssShmem")


def proc_status(pid):
    """STATUS_FIELDS of process pid in bytes, and its Threads
    (/proc/PID/status)."""
    vals = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in STATUS_FIELDS:
                vals[name] = int(rest.split()[0]) * 1024
            elif name == "Threads":
                vals[name] = int(rest.split()[0])
    missing = [k for k in STATUS_FIELDS if k not in vals]
    if missing:
        raise BenchError("no %s for process %d" % (", ".join(missing), pid))
    return vals


def settled_status(pid, timeout=10):
    """proc_status() once each of its fields has stopped moving: RELEASE
    of the last files closed may still be on its way to the daemon."""
    deadline = time.monotonic() + timeout
    last = proc_status(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = proc_status(pid)
        if all(abs(now[k] - last[k]) < 64 * 1024 for k in STATUS_FIELDS):
            return now
        last = now
    log("memory of process %d did not settle; the figure may be off" % pid)
    return last


def daemon_pids(pid):
    """(keeper, server) of the sectionfs started as pid.

    The process started becomes a keeper that serves nothing; the server
    is its child, the only one it has.  A build with no keeper serves in
    the process started and has no child: then (None, pid).
    """
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = [int(c) for c in f.read().split()]
    except OSError as e:
        raise BenchError("cannot read the children of daemon %d: %s" %
                         (pid, e.strerror))
    if not children:
        return None, pid
    if len(children) > 1:
        log("daemon %d has %d children; taking %d for the server" %
            (pid, len(children), children[0]))
    return pid, children[0]


def make_files(directory, count, prefix):
    """Create count empty files (O_CREAT, then close); returns how many
    were made before the first failure, which is logged."""
    for i in range(count):
        try:
            os.close(os.open(os.path.join(directory, "%s%07d" % (prefix, i)),
                             os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as e:
            log("creating file %d in %s: %s" % (i + 1, directory,
                                                e.strerror))
            return i
    return count


def empty_files(directory, count, pid):
    """What empty files cost, per file: kernel Slab and, given the pid of
    the sectionfs started, the memory of its server and of its keeper
    (daemon_pids()); as many as count, or as many as could be made.

    The daemon first serves a few hundred creates and unlinks, so that
    its worker threads and their buffers exist before the first reading
    and are not counted against the sections.

    Per file: "server_anon" the server's RssAnon, "server_shmem" its
    RssShmem (the record), "keeper_rss" the keeper's VmRSS (absent with
    no keeper), "rss" the VmRSS of both (the daemon, all its processes),
    and "machine" that and the slab.
    """
    top = os.path.join(directory, "sections")
    os.mkdir(top)
    for i in range(make_files(top, 200, "w")):
        os.unlink(os.path.join(top, "w%07d" % i))
    keeper, server = daemon_pids(pid) if pid else (None, None)
    procs = [(k, p) for k, p in (("server", server), ("keeper", keeper))
             if p]
    before = {k: settled_status(p) for k, p in procs}
    slab0 = slab_less_proc()
    made = make_files(top, count, "s")
    if made < min(count, 1000):
        raise BenchError("only %d empty files could be made in %s" %
                         (made, top))
    if pid and daemon_pids(pid) != (keeper, server):
        log("the server of daemon %d changed while the files were made; "
            "its memory figures are off" % pid)
    after = {k: settled_status(p) for k, p in procs}
    slab1 = slab_less_proc()
    out = {"count": made, "slab": (slab1 - slab0) / made}
    if not pid:
        out["machine"] = out["slab"]
        return out

    def grown(proc, field):
        return (after[proc][field] - before[proc][field]) / made

    out["server_anon"] = grown("server", "RssAnon")
    out["server_shmem"] = grown("server", "RssShmem")
    out["rss"] = sum(grown(k, "VmRSS") for k, _ in procs)
    if keeper:
        out["keeper_rss"] = grown("keeper", "VmRSS")
    out["machine"] = out["slab"] + out["rss"]
    out["server_threads"] = [before["server"]["Threads"],
                             after["server"]["Threads"]]
    out["pids"] = dict(procs)
    out["status_before"] = before
    out["status_after"] = after
    return out


def can_raise_nofile(limit):
    """Whether a child can be given limit open files: above the current
    hard limit that takes CAP_SYS_RESOURCE, which root may lack in a
    container."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= limit:
        return True
    res = subprocess.run(["prlimit", "--nofile=%d:%d" % (limit, limit),
                          "--", "true"], capture_output=True)
    return res.returncode == 0


def sections(mounts, tmpfs_path, args):
    """Per-file cost of args.sections empty files on each target.

    Each sectionfs target gets a fresh daemon, unmounted right after.
    Every section holds an fd in the daemon, which raises its soft limit
    on open files only as far as the hard limit it was started with: the
    daemon is started with room for them all where this process may grant
    it, and otherwise holds as many as its limit allows, the cost per
    section then taken over those.
    """
    out = {}
    nofile = args.sections + 1000
    if not can_raise_nofile(nofile):
        log("cannot give the daemon %d open files (no CAP_SYS_RESOURCE?); "
            "it holds as many sections as its hard limit of %d allows" %
            (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        nofile = None
    for target in TARGETS:
        name, label, mode, _ = target
        if name not in args.wanted:
            continue
        if mode is None:
            cost = empty_files(tmpfs_path, args.sections, None)
            for i in range(cost["count"]):
                os.unlink(os.path.join(tmpfs_path, "sections",
                                       "s%07d" % i))
            os.rmdir(os.path.join(tmpfs_path, "sections"))
        else:
            path = os.path.join(mounts.base, name + "-sections")
            proc = mounts.sectionfs(path, daemon_of(args, name), target,
                                    nofile)
            try:
                cost = empty_files(path, args.sections, proc.pid)
            finally:
                mounts.unmount(path)
            log("%s: %d empty sections, %s" % (name, cost["count"], ", ".join(
                "%s VmRSS %.1f -> %.1f MiB" %
                (k, cost["status_before"][k]["VmRSS"] / MiB,
                 cost["status_after"][k]["VmRSS"] / MiB)
                for k in cost["pids"])))
        out[name] = cost
    return out


# ----------------------------------------------------------------- table

# A section's heading in the table, where its name alone does not say
# enough.
SECTION_HEADS = {"memory": "memory (rows in B: per empty file, or section)"}


def ratio(value, base):
    return value / base if base else float("nan")


def rows():
    """Every table row: (section, key, label, unit)."""
    out = []
    for key, label, _ in WORKLOADS:
        for jobs in JOBS:
            out.append(("data", "%s/%d" % (key, jobs),
                        data_label(label, jobs), "MB/s"))
    for threads in THREADS:
        for phase in PHASES:
            out.append(("names", "%s/%d" % (phase, threads),
                        names_label(phase, threads), "ops/s"))
    out.append(("memory", "Cached", "Cached per byte of section", "B/B"))
    out.append(("memory", "Shmem", "Shmem per byte of section", "B/B"))
    # Per empty file (section): the kernel's, the daemon's processes',
    # and the two together.
    out.append(("memory", "slab", "kernel slab per empty file (*)", "B"))
    out.append(("memory", "server_anon", "server private RSS", "B"))
    out.append(("memory", "server_shmem", "server shared RSS (the record)",
                "B"))
    out.append(("memory", "keeper_rss", "keeper RSS", "B"))
    out.append(("memory", "rss", "daemon RSS, all processes", "B"))
    out.append(("memory", "machine",
                "machine per empty section (slab + daemon)", "B"))
    return out


def value(results, name, key):
    """A cell's value in the table's unit, or None where it has none."""
    res = results.get(name)
    if res is None:
        return None
    if key in res["data"]:
        return res["data"][key] / 1e6
    if key in res["names"]:
        return res["names"][key]
    if key in res["mem"]:
        return res["mem"][key]
    return res["sections"].get(key)


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "B/B":
        return "%.2f" % v
    return "%.0f" % v


def table(args, results):
    present = [t for t in TARGETS if t[0] in results]
    has_base = "tmpfs" in results
    lines = []
    lines.append("sectionfs bench, %s" % args.date)
    lines.append("Linux %s, %s, %d CPUs, load average %.1f at the start "
                 "and %.1f at the end" % (args.system, args.fio,
                                          args.cpus, args.load[0],
                                          args.load[1]))
    lines.append("%s of %d rounds, the targets taking turns" %
                 ("median" if args.estimator == "median" else "best",
                  args.rounds))
    lines.append("data: fio on one %d MiB file, %g s per run, psync or "
                 "mmap at iodepth 1, invalidate=0; two jobs share the file "
                 "(sequential: a half each)" %
                 (args.size // MiB, args.runtime))
    lines.append("names: metabench, %d files in one directory, readdir "
                 "%d listings of it" % (args.files, LISTINGS))
    if getattr(args, "idle", None):
        lines.append("idle CPUs: cpuidle governor %s" % args.idle)
    counts = ", ".join("%s %d" % (label, results[name]["sections"]["count"])
                       for name, label, _, _ in present)
    short = any(results[name]["sections"]["count"] < args.sections
                for name, _, _, _ in present)
    lines.append("memory: one %d MiB section written; empty files made: %s%s"
                 % (args.mem_size // MiB, counts,
                    " (of %d: the daemon's open file limit)" % args.sections
                    if short else ""))
    grew = []
    for name, label, _, _ in present:
        t0, t1 = results[name]["sections"].get("server_threads", (0, 0))
        if t0 != t1:
            grew.append("%s %d -> %d" % (label, t0, t1))
    if grew:
        lines.append("server threads started while the empty files were "
                     "made (%s): each one's read buffer, up to 1 MiB, is "
                     "in that target's private RSS" % ", ".join(grew))
    lines.append("MB/s = 10^6 bytes/s; ratio = sectionfs / tmpfs")

    width = 44
    head = "%-*s %-6s" % (width, "", "unit")
    for name, label, _, _ in present:
        head += " %10s" % label
        if has_base and name != "tmpfs":
            head += " %6s" % "ratio"
    lines.append("")
    lines.append(head)
    section = None
    for sec, key, label, unit in rows():
        if sec != section:
            if section:
                lines.append("")
            section = sec
            lines.append(SECTION_HEADS.get(sec, sec))
        line = "  %-*s %-6s" % (width - 2, label, unit)
        base = value(results, "tmpfs", key)
        for name, _, _, _ in present:
            v = value(results, name, key)
            line += " %10s" % fmt(v, unit)
            if has_base and name != "tmpfs":
                r = None if v is None or not base else v / base
                line += " %6s" % ("-" if r is None else "%.2f" % r)
        lines.append(line)

    lines.append("")
    lines.extend(spread_lines(results))
    if has_base:
        lines.append("")
        lines.extend(goals(results))
    if baseline_pairs(results):
        lines.append("")
        lines.extend(against_baseline(results))
    lines.append("")
    lines.append("targets: tmpfs; passthru = sectionfs -o passthrough=on; "
                 "cached = sectionfs -o passthrough=off; both with "
                 "io_uring=off (requests over /dev/fuse)")
    if {"cached-wb", "cached-wb100"} & set(results):
        lines.append("         ca+wb = cached with writeback_cache; ca+wb100 "
                     "= the same with the mount's bdi max_ratio raised "
                     "from the kernel's 1 to 100")
    if set(URING) & set(results):
        lines.append("         pt+uring, ca+uring = the same with "
                     "io_uring=on (requests over io_uring, fuse module "
                     "enable_uring set for the run)")
    if set(BASELINE) & set(results):
        lines.append("         pt@base, ca@base = passthru, cached as the "
                     "baseline binary %s mounts them" % args.baseline)
    lines.append("(*) less the /proc inodes a walk of /proc/PID/fd (lsof, a "
                 "monitoring agent) gives each open descriptor")
    elapsed = int(args.elapsed)
    lines.append("run took %d min %02d s (data %.0f s, names %.0f s, "
                 "memory %.0f s)" % (elapsed // 60, elapsed % 60,
                                     args.timing["data"],
                                     args.timing["names"],
                                     args.timing["memory"]))
    return "\n".join(lines) + "\n"


def spread(runs):
    """(max - min) / median of one cell's rounds."""
    med = statistics.median(runs)
    return (max(runs) - min(runs)) / med if med else 0.0


def spread_lines(results):
    """How far the rounds of a cell lay apart, per target and section: the
    middle cell and the widest, and where."""
    out = ["spread over rounds, (max - min) / median of a cell: "
           "middle cell, widest cell"]
    for name, label, _, _ in TARGETS:
        if name not in results:
            continue
        parts = []
        for sec in ("data", "names"):
            raw = {k: v for k, v in results[name]["raw"].items()
                   if k in results[name][sec]}
            if not raw:
                continue
            key = max(raw, key=lambda k: spread(raw[k]))
            mid = statistics.median(spread(v) for v in raw.values())
            parts.append("%s %.0f%%, %.0f%% (%s)" %
                         (sec, 100 * mid, 100 * spread(raw[key]), key))
        out.append("  %-10s %s" % (label, "; ".join(parts)))
    return out


def row_ratios(results, name, base, sec):
    """Each row of section sec: target name's figure over target base's.
    Without fallocate, which is the daemon's on both paths: a name
    operation's cost, not the data plane's."""
    res, ref = results[name][sec], results[base][sec]
    return {k: ratio(res[k], ref[k]) for k in res
            if k in ref and not k.startswith("falloc/")}


def worst_row(ratios):
    """(ratio, row) of the lowest of row_ratios()."""
    key = min(ratios, key=ratios.get)
    return ratios[key], key


def goal_line(out, width, text, got, ok):
    """One goal, what was measured, and whether it was met, into out."""
    out.append("  %-*s %-26s %s" % (width, text, got,
                                    "met" if ok else "NOT MET"))


def goals(results):
    """The project's performance goals, each with its worst cell."""
    def worst(name, sec):
        return worst_row(row_ratios(results, name, "tmpfs", sec))

    out = ["goals (a benchmark informs; the test suite decides):"]

    def line(text, got, ok):
        goal_line(out, 44, text, got, ok)

    present = [t for t in TARGETS if t[2] and t[0] in results
               and t[0] not in BASELINE]
    for name, label, mode, _ in present:
        goal = GOAL_PT if mode == "on" else GOAL_CACHED
        r, k = worst(name, "data")
        line("%s data rows >= %.2f of tmpfs" % (label, goal),
             "worst %.2f (%s)" % (r, k), r >= goal)
    for name, label, mode, _ in present:
        if mode == "on":
            mem = results[name]["mem"]["Cached"]
            line("%s Cached per byte <= %.2f" % (label, GOAL_MEM),
                 "%.2f" % mem, mem <= GOAL_MEM)
    for name, label, _, _ in present:
        r, k = worst(name, "names")
        line("%s names rows >= %.2f of tmpfs" % (label, GOAL_NAMES),
             "worst %.2f (%s)" % (r, k), r >= GOAL_NAMES)
    for name, label, _, _ in present:
        rss = results[name]["sections"]["rss"]
        line("%s daemon RSS per section < %d B" % (label, GOAL_RSS),
             "%.0f B" % rss, rss < GOAL_RSS)
    return out


def baseline_pairs(results):
    """(target, its label, baseline target, its label) for each baseline
    target in results whose target of this build is there too."""
    labels = {t[0]: t[1] for t in TARGETS}
    return [(ours, labels[ours], base, labels[base])
            for base, ours in BASELINE.items()
            if base in results and ours in results]


def against_baseline(results):
    """This build against the baseline binary, target by target: the
    figures, then the goals held against it."""
    out = ["against the baseline: this build / baseline (data rows "
           "without fallocate, as in the goals above; memory per empty "
           "section)"]
    figs = []
    for ours, label, base, blabel in baseline_pairs(results):
        f = {"label": label, "blabel": blabel}
        for sec in ("data", "names"):
            by_row = row_ratios(results, ours, base, sec)
            f[sec] = worst_row(by_row)
            f[sec + "_median"] = statistics.median(by_row.values())
        for key in ("rss", "machine"):
            a = results[ours]["sections"].get(key)
            b = results[base]["sections"].get(key)
            f[key] = (a / b if a is not None and b and b > 0
                      else float("nan"), a, b)
        figs.append(f)
        head = "  %s / %s: " % (label, blabel)
        out.append("%sdata worst %.2f (%s); names worst %.2f (%s), median "
                   "%.2f" % (head, f["data"][0], f["data"][1],
                             f["names"][0], f["names"][1],
                             f["names_median"]))
        out.append("%sdaemon RSS, all processes %s; machine %s" %
                   (" " * len(head), mem_ratio(f["rss"]),
                    mem_ratio(f["machine"])))
    out.append("goals against the baseline:")

    def line(text, got, ok):
        goal_line(out, 52, text, got, ok)

    for sec, goal in (("data", GOAL_BASE_DATA), ("names", GOAL_BASE_NAMES)):
        for f in figs:
            r, key = f[sec]
            line("%s %s rows >= %.2f of %s" % (f["label"], sec, goal,
                                               f["blabel"]),
                 "worst %.2f (%s)" % (r, key), r >= goal)
    for key, what in (("rss", "daemon RSS"), ("machine", "machine")):
        for f in figs:
            r = f[key][0]
            line("%s %s per section <= %.2f of %s" %
                 (f["label"], what, GOAL_BASE_MEM, f["blabel"]),
                 "%.2f" % r, r <= GOAL_BASE_MEM)
    return out


def mem_ratio(fig):
    """A memory ratio with the figures it is of: (ratio, ours, base)."""
    r, a, b = fig
    if a is None or b is None:
        return "-"
    return "%.2f (%.0f B / %.0f B)" % (r, a, b)


def cpu_idle():
    """How an idle CPU waits here: the cpuidle governor and, for a virtual
    machine's haltpoll governor, how long it polls before it halts.  A
    FUSE round trip wakes an idle CPU twice, and waking a halted vCPU
    takes the hypervisor, so this moves the name rows; it is recorded
    beside them.  None where the kernel does not say."""
    try:
        with open("/sys/devices/system/cpu/cpuidle/current_governor_ro") as f:
            governor = f.read().strip()
    except OSError:
        return None
    if governor != "haltpoll":
        return governor
    try:
        with open("/sys/module/haltpoll/parameters/guest_halt_poll_ns") as f:
            return "%s, guest_halt_poll_ns %s" % (governor, f.read().strip())
    except OSError:
        return governor


def fio_version():
    res = subprocess.run(["fio", "--version"], capture_output=True,
                         text=True)
    return res.stdout.strip()


# ----------------------------------------------------------------- chart

def chart_rows(results):
    """(section, label, {target: ratio}) for every row with a ratio."""
    out = []
    for sec, key, label, unit in rows():
        base = value(results, "tmpfs", key)
        ratios = {}
        for name in SECTIONFS:
            v = value(results, name, key)
            if v is not None and base:
                ratios[name] = v / base
        if ratios:
            out.append((sec, label, ratios))
    return out


def chart(results, path):
    """Draw the ratios as a PNG; returns False, saying why, if it cannot."""
    if "tmpfs" not in results or not any(n in results for n in SECTIONFS):
        log("no chart: it needs tmpfs and a sectionfs target")
        return False
    data = chart_rows(results)
    try:
        import matplotlib
    except ImportError:
        matplotlib = None
    if matplotlib:
        chart_matplotlib(data, path)
        return True
    if shutil.which("gnuplot"):
        chart_gnuplot(data, path)
        return True
    log("no chart: install python3-matplotlib (or gnuplot-nox) to draw "
        + path)
    return False


SECTION_TITLES = {
    "data": "data: MB/s vs tmpfs (higher is better)",
    "names": "names: ops/s vs tmpfs (higher is better)",
    "memory": "memory vs tmpfs (lower is better)",
}
COLOURS = {"pt": "#1f77b4", "cached": "#ff7f0e", "pt-uring": "#17becf",
           "cached-uring": "#d62728", "cached-wb": "#2ca02c",
           "cached-wb100": "#9467bd", "pt-base": "#aec7e8",
           "cached-base": "#ffbb78"}
LABELS = {"pt": "sectionfs passthrough", "cached": "sectionfs cached",
          "pt-uring": "passthrough, io_uring",
          "cached-uring": "cached, io_uring",
          "cached-wb": "cached, writeback_cache",
          "cached-wb100": "cached, writeback_cache, bdi max_ratio 100",
          "pt-base": "passthrough, baseline binary",
          "cached-base": "cached, baseline binary"}
# The goals drawn as dashed lines: (section, ratio, target or None).
GOAL_LINES = [("data", GOAL_PT, "pt"), ("data", GOAL_CACHED, "cached"),
              ("names", GOAL_NAMES, None), ("memory", GOAL_MEM, "pt")]
# Ratios above this run off the chart's right edge, their value written.
CHART_MAX = 2.0


def chart_matplotlib(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.pyplot as plt

    secs = [s for s in SECTION_TITLES if any(d[0] == s for d in data)]
    heights = [sum(1 for d in data if d[0] == s) for s in secs]
    fig, axes = plt.subplots(len(secs), 1, figsize=(9, 0.36 * sum(heights)
                                                    + 1.6 * len(secs)),
                             gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    shown = [n for n in SECTIONFS if any(n in d[2] for d in data)]
    bar = 0.8 / len(shown)
    # One scale for every panel, so that a bar's length means the same.
    top = min(CHART_MAX, max([1.2] + [r for d in data
                                      for r in d[2].values()]))
    for ax, sec in zip(axes[:, 0], secs):
        part = [d for d in data if d[0] == sec]
        for j, name in enumerate(shown):
            ys = [i + (j - (len(shown) - 1) / 2) * bar
                  for i in range(len(part))]
            xs = [d[2].get(name, 0) for d in part]
            ax.barh(ys, [x if x <= top else top * 1.12 for x in xs],
                    height=bar, color=COLOURS[name], label=LABELS[name])
            for y, x in zip(ys, xs):
                if x > top:
                    ax.text(top * 1.11, y, "%.2f" % x, va="center",
                            ha="right", fontsize=7, color="white",
                            fontweight="bold")
                else:
                    ax.text(x + top * 0.01, y, "%.2f" % x, va="center",
                            fontsize=7)
        ax.axvline(1.0, color="black", linewidth=0.8)
        for gsec, goal, name in GOAL_LINES:
            if gsec == sec:
                ax.axvline(goal, linestyle="--", linewidth=0.9,
                           color=COLOURS.get(name, "grey"))
        ax.set_yticks(range(len(part)))
        ax.set_yticklabels([d[1] for d in part], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, top * 1.12)
        ax.set_title(SECTION_TITLES[sec], fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", linewidth=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(matplotlib.lines.Line2D([], [], color="grey",
                                           linestyle="--", linewidth=0.9))
    labels.append("goal")
    fig.suptitle("sectionfs / tmpfs (1.0 = as tmpfs)", fontsize=11)
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, 1 - 0.45 / fig.get_figheight()),
               frameon=False)
    # Room for the title and the legend's rows.
    rows = -(-len(labels) // 3)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.3 + 0.17 * rows) /
                           fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_gnuplot(data, path):
    """The same chart, as clustered vertical bars, one panel per section."""
    secs = [s for s in SECTION_TITLES if any(d[0] == s for d in data)]
    shown = [n for n in SECTIONFS if any(n in d[2] for d in data)]
    top = min(CHART_MAX, max([1.2] + [r for d in data
                                      for r in d[2].values()]))
    script = ["set terminal pngcairo size 1100,%d font ',9'" %
              (330 * len(secs)),
              "set output '%s'" % path.replace("'", "''"),
              "set style data histograms",
              "set style histogram clustered gap 1",
              "set style fill solid border -1",
              "set boxwidth 0.9",
              "set xtics rotate by -35 left",
              "set grid ytics",
              "set key outside right top vertical",
              "set multiplot layout %d,1 title "
              "'sectionfs / tmpfs (1.0 = as tmpfs)'" % len(secs)]
    for sec in secs:
        part = [d for d in data if d[0] == sec]
        rows_ = "\n".join('"%s" %s' % (d[1], " ".join(
            "%.3f" % d[2].get(n, 0) for n in shown)) for d in part)
        script.append("$%s << EOD\n%s\nEOD" % (sec, rows_))
        script.append("set title '%s'" % SECTION_TITLES[sec])
        script.append("set yrange [0:%.2f]" % (top * 1.12))
        goals_ = "".join(", %.2f notitle dt 2 lc rgb '%s'" %
                         (goal, COLOURS.get(name, "grey"))
                         for gsec, goal, name in GOAL_LINES if gsec == sec)
        script.append("plot " + ", ".join(
            "$%s using %d:xtic(1) title '%s' lc rgb '%s'" %
            (sec, j + 2, LABELS[n], COLOURS[n])
            for j, n in enumerate(shown)) +
            ", 1 notitle lc rgb 'black'" + goals_)
    script.append("unset multiplot")
    res = subprocess.run(["gnuplot"], input="\n".join(script) + "\n",
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise BenchError("gnuplot failed: " + res.stderr.strip())


# ------------------------------------------------------------------ main

def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--daemon", default=os.path.join(
        here, "..", "src", "sectionfs"), help="the sectionfs binary")
    p.add_argument("--metabench", default=os.path.join(here, "metabench"),
                   help="the metabench binary (built by make bench)")
    p.add_argument("--output", default=os.path.join(here, "results.txt"),
                   help="where the table is saved (default "
                   "bench/results.txt); the raw rounds go beside it as "
                   ".json")
    p.add_argument("--chart", default=None,
                   help="the PNG of the ratios (default ratios.png beside "
                   "the table); 'none' to skip it")
    p.add_argument("--baseline", metavar="PATH", default=None,
                   help="another sectionfs binary (an older build) to hold "
                   "this one against: mounted as well, as pt-base and "
                   "cached-base (the options of pt and cached), taking "
                   "turns with the others; a section of the table gives "
                   "this build's ratios to it")
    p.add_argument("--targets", default=None,
                   help="comma list of %s (default all; the io_uring ones "
                   "where the kernel has it, the baseline ones with "
                   "--baseline)" % ", ".join(t[0] for t in TARGETS))
    p.add_argument("--quick", action="store_true",
                   help="a short run to check the bench itself: 1 round, "
                   "1 s runs, 256 MiB, 2000 files, 10000 sections")
    p.add_argument("--size", type=int, default=None,
                   help="fio file size in bytes (default 1 GiB)")
    p.add_argument("--mem-size", type=int, default=None,
                   help="section size for the memory figure (default 1 GiB)")
    p.add_argument("--runtime", type=float, default=None,
                   help="seconds per fio run (default 1.5)")
    p.add_argument("--rounds", type=int, default=None,
                   help="runs per row and target, one figure kept "
                   "(default 5)")
    p.add_argument("--estimator", choices=("median", "best"),
                   default="median",
                   help="the figure kept of a cell's rounds: the median "
                   "(default), or the best, which on a busy shared "
                   "machine is the least disturbed")
    p.add_argument("--replot", metavar="JSON", default=None,
                   help="measure nothing: remake the table and chart from "
                   "the rounds a run saved, with this run's --estimator")
    p.add_argument("--caller-cgroup", metavar="DIR", default=None,
                   help="run fio in this cgroup (a directory of the "
                   "cgroup filesystem), not in the daemons': the pages "
                   "sectionfs allocates for it are then charged there")
    p.add_argument("--files", type=int, default=None,
                   help="files per metabench run (default 10000)")
    p.add_argument("--sections", type=int, default=None,
                   help="empty sections for the per-section memory "
                   "(default 100000)")
    args = p.parse_args()
    full = {"size": GiB, "mem_size": GiB, "runtime": 1.5, "rounds": 5,
            "files": 10000, "sections": 100000}
    quick = {"size": 256 * MiB, "mem_size": 256 * MiB, "runtime": 1,
             "rounds": 1, "files": 2000, "sections": 10000}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.chart is None:
        args.chart = os.path.join(os.path.dirname(
            os.path.abspath(args.output)), "ratios.png")
    if args.targets is None:
        reason = uring_reason()
        if reason:
            log("no io_uring targets: " + reason)
        args.targets = ",".join(
            t[0] for t in TARGETS
            if (not reason or t[0] not in URING)
            and (args.baseline or t[0] not in BASELINE))
    args.wanted = [t for t in args.targets.split(",") if t]
    if args.baseline and os.sep in args.baseline:
        args.baseline = os.path.abspath(args.baseline)
    args.estimate = statistics.median if args.estimator == "median" else max
    args.date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    args.load = [os.getloadavg()[0]]
    return args


def uring_reason():
    """Why the io_uring targets cannot run here, or None."""
    try:
        with open(URING_PARAM) as f:
            f.read()
    except OSError:
        return ("the kernel has no FUSE over io_uring (Linux >= 6.14 with "
                "CONFIG_FUSE_IO_URING)")
    if not os.access(URING_PARAM, os.W_OK):
        return URING_PARAM + " is not writable"
    return None


@contextlib.contextmanager
def uring_offered(args):
    """The fuse module offers io_uring at INIT while io_uring targets are
    mounted; its setting is restored after, whatever happened."""
    if not set(URING) & set(args.wanted):
        yield
        return
    with open(URING_PARAM) as f:
        old = f.read().strip()
    with open(URING_PARAM, "w") as f:
        f.write("Y")
    try:
        yield
    finally:
        with open(URING_PARAM, "w") as f:
            f.write(old)


def check(args):
    if os.geteuid() != 0:
        raise BenchError("needs root: it mounts a tmpfs, and passthrough "
                         "needs CAP_SYS_ADMIN")
    for tool, package in (("fio", "fio"), ("prlimit", "util-linux")):
        if not shutil.which(tool):
            raise BenchError("%s not found (Debian package %s)" %
                             (tool, package))
    if set(args.wanted) - {t[0] for t in TARGETS}:
        raise BenchError("unknown target in --targets=" + args.targets)
    if set(URING) & set(args.wanted) and uring_reason():
        raise BenchError("no io_uring targets: " + uring_reason())
    ours = set(SECTIONFS) - set(BASELINE)
    if ours & set(args.wanted) and not os.access(args.daemon, os.X_OK):
        raise BenchError("no daemon at %s (build it first)" % args.daemon)
    if set(BASELINE) & set(args.wanted):
        if not args.baseline:
            raise BenchError("%s need --baseline" %
                             ", ".join(sorted(BASELINE)))
        if not os.access(args.baseline, os.X_OK):
            raise BenchError("no baseline daemon at %s" % args.baseline)
    if not os.access(args.metabench, os.X_OK):
        raise BenchError("no metabench at %s (make bench builds it)" %
                         args.metabench)
    if args.size % (MiB * max(JOBS)) or args.mem_size % MiB:
        raise BenchError("--size must be a multiple of %d MiB and "
                         "--mem-size of 1 MiB" % max(JOBS))


def run(args, mounts):
    paths = {}
    for target in TARGETS:
        name, label, mode, _ = target
        if name not in args.wanted:
            continue
        paths[name] = os.path.join(mounts.base, name)
        if mode is None:
            mounts.tmpfs(paths[name])
        else:
            mounts.sectionfs(paths[name], daemon_of(args, name), target)
        log("%s: %s" % (name, label))
    raw = {}
    t0 = time.monotonic()
    bw = throughput(paths, args, raw)
    t1 = time.monotonic()
    ops = metabench(paths, args, raw)
    t2 = time.monotonic()
    results = {}
    for name, path in paths.items():
        mem = memory(path, args.mem_size)
        log("%s memory: Cached %.2f, Shmem %.2f per byte" %
            (name, mem["Cached"], mem["Shmem"]))
        results[name] = {"data": bw[name], "names": ops[name], "mem": mem,
                         "raw": raw[name]}
    # Last: the empty sections take the fds the data runs would want.
    costs = sections(mounts, paths.get("tmpfs"), args)
    for name in results:
        results[name]["sections"] = costs[name]
    args.timing = {"data": t1 - t0, "names": t2 - t1,
                   "memory": time.monotonic() - t2}
    return results


def replot(args):
    """The saved run's results, each cell's figure kept anew from its
    rounds with args' estimator; args takes on the saved run's settings."""
    with open(args.replot) as f:
        saved = json.load(f)
    for k, v in saved["args"].items():
        if k not in ("estimator", "output", "chart", "replot"):
            setattr(args, k, v)
    results = saved["results"]
    for res in results.values():
        for sec in ("data", "names"):
            for key in res[sec]:
                res[sec][key] = args.estimate(res["raw"][key])
    return results


def save(args, results):
    """Print the table; save it, the raw rounds as JSON, and the chart."""
    text = table(args, results)
    sys.stdout.write(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    saved = [args.output]
    if not args.replot:
        stem = os.path.splitext(args.output)[0]
        with open(stem + ".json", "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items()
                                if k != "estimate"},
                       "results": results}, f, indent=1, sort_keys=True)
        saved.append(stem + ".json")
    log("saved to " + " and ".join(saved))
    if args.chart != "none":
        try:
            if chart(results, args.chart):
                log("chart saved to " + args.chart)
        except BenchError as e:
            log(str(e))


def main():
    start = time.monotonic()
    args = parse_args()
    if args.replot:
        try:
            results = replot(args)
        except (OSError, ValueError, KeyError) as e:
            log("cannot replot %s: %s" % (args.replot, e))
            return 1
        save(args, results)
        return 0
    # SIGTERM (make killed, CI timeout) must unmount too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        check(args)
        mounts = Mounts(tempfile.mkdtemp(prefix="sectionfs-bench."))
    except BenchError as e:
        log(str(e))
        return 1
    try:
        with uring_offered(args):
            results = run(args, mounts)
    except BenchError as e:
        log(str(e))
        return 1
    finally:
        stop_job()
        mounts.unmount_all()
        mounts.remove_dirs()

    args.elapsed = time.monotonic() - start
    args.load.append(os.getloadavg()[0])
    args.system = platform.release()
    args.fio = fio_version()
    args.cpus = os.cpu_count()
    args.idle = cpu_idle()
    save(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
