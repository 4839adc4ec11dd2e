"""The benchmark's C programs, built when they are needed: the C relay and the C fan-out generator.

    bench/c_relay.c              --cc -O2 -Wall -Wextra-->  bench/build/c_relay-HASH
    bench/c_loadgen.c, c_check.h --cc -O2 -Wall -Wextra-->  bench/build/c_loadgen-HASH

Built with the machine's C compiler ($CC, else cc, gcc or clang) into bench/build/,
which git ignores: a binary is never committed, it is made from the source where it
runs. The name carries a hash of the sources and the command, so an edited source is
built again and an unchanged one is not; a build writes a temporary file and renames
it, so two runs building at once (the bench and the tests) never see half a binary.

With no compiler, `build` raises `NoCompiler` (a `BuildError`, as is a build that
fails): the bench then runs without the C relay and measures the fan-out through the
Python generator, and its report says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
CFLAGS = ("-O2", "-Wall", "-Wextra")
PROGRAMS = {  # program: its sources, the first one compiled, the others included by it
    "c_relay": ("c_relay.c",),
    "c_loadgen": ("c_loadgen.c", "c_check.h"),
}
COMPILE_TIMEOUT = 120.0  # seconds; a build takes about one


class BuildError(Exception):
    """A C program could not be built."""


class NoCompiler(BuildError):
    """There is no C compiler here."""


def compiler() -> str | None:
    """The C compiler to use: $CC if set, else the first of cc, gcc, clang on the PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((found for cc in ("cc", "gcc", "clang") if (found := shutil.which(cc))), None)


def compiler_version(cc: str) -> str:
    """The first line of `cc --version`, e.g. "cc (Debian 12.2.0-14) 12.2.0"."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return cc
    return out.stdout.splitlines()[0].strip() if out.stdout else cc


def build(program: str) -> Path:
    """The path of `program` built from its current sources; built now if need be."""
    cc = compiler()
    if cc is None:
        raise NoCompiler("no C compiler found (cc, gcc or clang; or set CC)")
    sources = [HERE / name for name in PROGRAMS[program]]
    command = [cc, *CFLAGS]
    digest = hashlib.sha256(" ".join(command).encode())
    for source in sources:
        digest.update(source.read_bytes())
    target = BUILD / f"{program}-{digest.hexdigest()[:12]}"
    if target.exists():
        return target
    BUILD.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{program}-", dir=BUILD)
    os.close(fd)
    try:
        done = subprocess.run(
            [*command, "-o", tmp, str(sources[0])],
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
        )
        if done.returncode != 0:
            raise BuildError(f"{cc} failed to build {sources[0].name}:\n{done.stderr.strip()}")
        if done.stderr.strip():  # warnings: the sources are meant to build clean
            print(f"bench: {cc} warned on {sources[0].name}:\n{done.stderr}", file=sys.stderr)
        os.replace(tmp, target)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{cc} could not build {sources[0].name}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    for old in BUILD.glob(f"{program}-*"):  # earlier builds of older sources
        if old != target:
            old.unlink(missing_ok=True)
    return target


def build_all() -> tuple[dict[str, Path], str]:
    """Every C program that could be built, and one sentence for the report on how."""
    try:
        built = {program: build(program) for program in PROGRAMS}
    except BuildError as exc:
        return {}, f"C programs not built: {exc}"
    cc = compiler()
    assert cc is not None
    return built, f"C programs built with {compiler_version(cc)}, {' '.join(CFLAGS)}"
