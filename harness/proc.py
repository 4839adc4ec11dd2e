"""A process as the kernel sees it, read from /proc: threads, descriptors, memory, CPU.

What a server says about itself proves nothing; the tests, the demos and the bench read
these figures from the kernel instead. Linux only, like the servers' socket options.
"""

from __future__ import annotations

import os


def _status(pid: int, key: str) -> int:
    # The number after `key:` in /proc/PID/status (a count, or KiB).
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise LookupError(f"no {key}: line in /proc/{pid}/status")


def thread_count(pid: int) -> int:
    """The number of threads of process `pid`, as the kernel counts them."""
    return _status(pid, "Threads")


def open_fds(pid: int) -> int:
    """The number of open file descriptors of process `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid`, in bytes."""
    return _status(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory process `pid` had (VmHWM), since it started or since
    `reset_peak_rss`, in bytes: memory freed again still counts."""
    return _status(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> None:
    """Start `peak_rss_bytes` afresh from the resident memory of now (Linux 4.0 and later)."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # 5: reset the peak resident set size (proc(5))


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` (its threads, the ended ones too)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime: fields 14 and 15


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid`, from /proc/PID/stat."""
    return sum(cpu_split(pid))


def context_switches(pid: int) -> int:
    """Voluntary plus involuntary context switches of every thread of process `pid`.

    /proc/PID/status counts the main thread alone; each thread's own counts are in
    /proc/PID/task/TID/status. A thread that ends between two readings takes its
    counts with it, so this is exact only while the threads stay the same (the
    fan-out and the steady runs: every client is connected before and after).
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                for line in status:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt")):
                        total += int(line.split()[1])
        except OSError:  # the thread ended while we read (ENOENT, or ESRCH)
            continue
    return total


def run_time(pid: int) -> float:
    """CPU seconds of every thread of process `pid`, to the nanosecond (schedstat).

    /proc/PID/stat counts in clock ticks (10 ms), a tenth of a 50 x 2,000-line fan-out
    through the C generator; each thread's schedstat starts with its time on a CPU in
    nanoseconds. Like `context_switches`, exact while the threads stay the same.
    """
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except OSError:  # the thread ended while we read (ENOENT, or ESRCH)
            continue
    return total / 1e9
