"""`python -m benchmarks.app_load [--quick] [--output FILE] [--logs DIR]`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.app_load import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_load", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short phases, a 20 s soak")
    parser.add_argument("--output", type=Path, help="write the fragment here, not to stdout")
    parser.add_argument(
        "--logs",
        type=Path,
        help="keep the processes' logs (redis, devllm, api, worker-N) in this directory",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    fragment = run(progress, quick=args.quick, workdir=args.logs)
    if args.output:
        args.output.write_text(fragment)
    else:
        print(fragment, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
