"""dirctl's exit codes, shared by every verb and documented in `dirctl --help`."""

from typing import Final

OK: Final = 0
# Some input was invalid or some object could not be applied; every problem has been printed.
FAILED: Final = 1
# The command line itself was wrong (argparse's own convention).
USAGE: Final = 2
# The Director API could not be reached, no server or token is configured, or the token was refused (401).
UNAVAILABLE: Final = 3
# The named site does not exist (404).
NOT_FOUND: Final = 4
# --wait, or `dirctl wait`, gave up at --timeout.
TIMEOUT: Final = 5

HELP: Final = """\
exit codes:
  0  success: every object was valid (and applied); for diff: no differences
  1  some input was invalid, or the server refused a request (invalid, forbidden, conflict); each
     problem is printed as one `error:` line with the server's message and its field causes;
     for diff: there are differences
  2  the command line was wrong; for diff: any error (as kubectl diff: >1 is an error)
  3  the Director API could not be reached, no server/token is configured, or the token was refused
  4  the named site does not exist
  5  --wait or `dirctl wait` timed out

configuration: ~/.config/director/config.yaml (or $DIRECTOR_CONFIG) holds server, token and output;
DIRECTOR_SERVER and DIRECTOR_TOKEN override it, and --server / --token override both.
"""
