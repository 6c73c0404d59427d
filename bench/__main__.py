"""``python -m bench [--profile quick|default] [...]`` (``make bench PROFILE=quick``)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from types import FrameType

from bench import report
from bench.config import parse_args
from bench.runner import Bench


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C: what the bench started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    bench = Bench(cfg)
    try:
        results = asyncio.run(bench.run())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception:
        gone = bench.systems.exited()
        if gone:
            print(
                f"\nprocesses the bench started have exited: {gone} (0 or -15: something"
                " else stopped them, e.g. a test run's clean-up)",
                file=sys.stderr,
            )
        raise
    finally:
        bench.systems.stop_all(cfg.keep_app and bench.completed)
    paths = report.write_json(results, bench.out_dir)
    try:
        paths += report.plots(results, bench.samples, bench.out_dir)
    except Exception as exc:  # plots are a convenience; the JSON is the record
        print(f"plots failed: {exc}", file=sys.stderr)
    print()
    print(report.table(results))
    print()
    for line in report.targets_summary(results):
        print("  " + line)
    for note in results.get("notes", []):
        print("  note: " + note)
    print()
    shutil.rmtree(bench.tmp, ignore_errors=True)  # the generators' raw samples
    print(f"wrote {', '.join(str(p) for p in paths)} in {results['meta']['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
