"""`--isolate`: grade in a network namespace of its own, so nothing outside can reach in.

Most submissions hard-code a port and listen on every interface. In a fresh network
namespace (Linux's `unshare --net`) the server, the grader's clients and the client
under test have a loopback of their own and nothing else: nobody on the network can
connect to a submission while it runs, and two graders can run two servers on the
same port at once. An unprivileged user may make one inside a user namespace of its
own (`--map-root-user`), where the kernel allows that (most distributions do; some
turn it off with kernel.unprivileged_userns_clone=0 or an AppArmor rule).

The grader re-executes itself under `unshare` (the same process: exec, not fork) with
GRADER_ISOLATED set; inside, it brings the new namespace's loopback up, which starts
down, with one ioctl (what `ip link set lo up` does).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

ISOLATED = "GRADER_ISOLATED"
UNSHARE = ["unshare", "--net", "--map-root-user"]
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1  # <linux/sockios.h>, <net/if.h>


def enter(argv: list[str]) -> str:
    """Run the grader (`argv`) isolated: inside, bring lo up and return ''; outside,
    exec it under unshare (no return), or return why the system does not allow it."""
    if os.environ.get(ISOLATED):
        return loopback_up()
    if shutil.which("unshare") is None:
        return "no unshare command on this machine (util-linux); grade without --isolate"
    trial = subprocess.run([*UNSHARE, "true"], capture_output=True, text=True, timeout=10)
    if trial.returncode != 0:
        why = (trial.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"this system does not allow a network namespace ({why}); grade without --isolate"
    os.environ[ISOLATED] = "1"
    sys.stdout.flush()
    os.execvp(UNSHARE[0], [*UNSHARE, sys.executable, "-m", "grader", *argv])


def loopback_up() -> str:
    """Bring the loopback interface up (a new namespace's starts down); '' or why not."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sh22x", b"lo", 0)  # struct ifreq: a name, then flags
            flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    except OSError as exc:
        return f"cannot bring the loopback up in the namespace: {exc.strerror or exc}"
    return ""
