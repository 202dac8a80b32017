"""`prelabel` command line: the command table. Each command lives in its own module,
which adds its parser and runs it:

    annotate             prelabel.annotate (usage and exit codes there)
    evaluate, calibrate  prelabel.quality.commands
    preview, ls-backend  prelabel.tool_commands
    models               prelabel.models
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from prelabel import annotate, tool_commands
from prelabel import models as model_commands
from prelabel.annotate import EXIT_FATAL, EXIT_USAGE, UsageError
from prelabel.quality import commands as quality

log = logging.getLogger("prelabel")

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "annotate": annotate.run,
    **quality.COMMANDS,
    **tool_commands.COMMANDS,
    "models": model_commands.run,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prelabel", description="Client of the prelabel pre-labeling suite.")
    sub = parser.add_subparsers(dest="command", required=True)
    annotate.add_parser(sub)
    quality.add_parsers(sub)  # evaluate, calibrate
    tool_commands.add_parsers(sub)  # preview, ls-backend
    model_commands.add_parser(sub)  # models list|pull|verify
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except quality.QualityInputError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except Exception:
        log.exception("fatal error")
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
