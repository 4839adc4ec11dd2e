"""`python -m demo [--server MODULE]`: run the demo; exit 0 if all went as expected."""

from __future__ import annotations

import argparse
import sys

import demo
from demo.probes import DemoFailed
from demo.story import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=demo.__doc__.splitlines()[0] if demo.__doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--server", default="section_a.server", help="server module to run")
    args = parser.parse_args(argv)
    try:
        run(args.server)
    except (DemoFailed, OSError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
