"""The ``kip`` command: the subcommands each package owns, assembled above them. The Makefile calls it.

Layers point one way (competition <- pipelines <- tuning, submissions <- this module), so this is the one place
that sees them all. It parses, dispatches and turns a ``PipelineError`` into one line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from competition.errors import one_line_status
from pipelines import cli as pipelines_cli
from submissions import cli as submissions_cli
from tuning import cli as tuning_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kip", description="Kaggle image-classification pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    for package in (pipelines_cli, tuning_cli, submissions_cli):
        package.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        if args.tensorflow:
            from pipelines.quiet import import_tensorflow

            import_tensorflow()
        args.func(args)
        return 0

    try:
        return one_line_status(run)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
