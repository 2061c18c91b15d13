"""The `trackmon` command: the desktop window by default, plus headless subcommands.

Every failure a user can cause (bad arguments, a busy port, an unreadable file) ends in one
line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Sequence

from app.cli.common import CliError
from app.cli.flespi import cmd_flespi, cmd_pull
from app.cli.listen import cmd_cert, cmd_gui, cmd_record
from app.cli.parser import build_parser
from app.cli.recordings import cmd_check, cmd_export, cmd_import, cmd_sessions
from app.cli.send import cmd_replay, cmd_simulate
from app.store.module_process import binary_stdout

COMMANDS = {"record": cmd_record, "simulate": cmd_simulate, "sessions": cmd_sessions,
            "export": cmd_export, "import": cmd_import, "replay": cmd_replay, "cert": cmd_cert, "check": cmd_check,
            "gui": cmd_gui, "flespi": cmd_flespi, "pull": cmd_pull}


def _whole_stdout() -> None:
    """Under ``python -u`` / ``PYTHONUNBUFFERED=1`` standard output writes to the raw file, and a
    write a signal interrupts on a full pipe (Ctrl+Z and ``fg``) comes back short with no error:
    ``trackmon export -o - | gzip`` then made a file with a hole, exit code 0. A buffered writer
    writes everything; flushed at each line, as unbuffered output would be."""
    if isinstance(getattr(sys.stdout, "buffer", None), io.FileIO):
        sys.stdout = io.TextIOWrapper(binary_stdout(), encoding=sys.stdout.encoding, errors=sys.stdout.errors,
                                      line_buffering=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `trackmon` console script and `python -m app`."""
    parser = build_parser()
    words = list(argv if argv is not None else sys.argv[1:])
    # No command means the window: `trackmon --port 9000` is `trackmon gui --port 9000`.
    first = next((i for i, word in enumerate(words) if word not in ("-v", "--verbose")), len(words))
    if first == len(words) or (words[first].startswith("-") and words[first] not in ("-h", "--help")):
        words.insert(first, "gui")
    args = parser.parse_args(words)
    _whole_stdout()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(f"trackmon: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `trackmon check | head`: the reader left, stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps Python's exit flush from failing again
        return 141
