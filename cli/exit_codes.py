"""dirctl's exit codes, shared by every verb and documented in `dirctl --help`."""

from typing import Final

OK: Final = 0
# Some input was invalid or some object could not be applied; every problem has been printed.
FAILED: Final = 1
# The command line itself was wrong (argparse's own convention).
USAGE: Final = 2
# The operation needs the Director API, which this build cannot reach or does not offer yet.
UNAVAILABLE: Final = 3

HELP: Final = """\
exit codes:
  0  success: every object was valid (and applied)
  1  some input was invalid or could not be applied; each problem is printed as one `error:` line
  2  the command line was wrong
  3  the operation needs the Director API, which could not be reached or is not available yet
"""
