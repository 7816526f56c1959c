"""The one exception type the command line turns into a one-line message."""


class PipelineError(Exception):
    """A problem the user can fix: bad input, missing file, missing credentials.

    The message is one line naming the file or row and what to do. The command line
    prints it without a traceback and exits non-zero.
    """


def first_line(err: BaseException) -> str:
    """A library exception as one short line, for messages that must stay one line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def run_main(main) -> None:
    """Run a script's ``main()`` and exit with its status; a PipelineError is one line and exit 2, as in ``kip``."""
    import sys

    try:
        status = main()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        status = 2
    raise SystemExit(status)
