"""python -m vmprof_viewer_client [--project P] [--period S] script.py args...

Runs a whole script as one profiled call, as if it were started with
`python script.py args...`. The project defaults to $VMPV_PROJECT, else to
the script's file name without extension; the run's function is the script
path as given.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from typing import List, Optional

from . import _settings
from ._profile import profiling
from ._settings import configure


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vmprof_viewer_client",
        description="Profile a whole Python script with vmprof-viewer.",
    )
    parser.add_argument("--project", help=f"project name (default: ${_settings.ENV_PROJECT} or the script name)")
    parser.add_argument("--period", type=float,
                        help=f"sampling period in seconds, {_settings.MIN_PERIOD} <= S < {_settings.MAX_PERIOD} "
                             f"(default: ${_settings.ENV_PERIOD} or {_settings.DEFAULT_PERIOD})")
    parser.add_argument("--url", help=f"vmprof-viewer server for direct uploads (default: ${_settings.ENV_URL})")
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    args = parser.parse_args(argv)

    if args.period is not None:
        try:
            _settings.validate_period(args.period, "--period")
        except ValueError as exc:
            parser.error(str(exc))
    project = args.project or os.environ.get(_settings.ENV_PROJECT) or \
        os.path.splitext(os.path.basename(args.script))[0] or args.script
    try:
        configure(project, url=args.url, period=args.period)
    except ValueError as exc:
        parser.error(str(exc))

    if not os.path.isfile(args.script):
        parser.error(f"cannot find the script {args.script!r}")
    # What `python script.py` would see: its own argv and its directory first on sys.path.
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    with profiling(args.script):
        runpy.run_path(args.script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
