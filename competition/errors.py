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


def one_line_status(main) -> int:
    """``main()``'s exit status; a PipelineError is printed as one line (``error: ...``) and gives status 2."""
    import sys

    try:
        return main()
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_main(main) -> None:
    """Run a script's ``main()`` and exit with its status, a PipelineError as one line and exit 2, as in ``kip``."""
    raise SystemExit(one_line_status(main))
