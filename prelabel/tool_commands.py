"""Subcommands for annotation tools: `prelabel preview` and `prelabel ls-backend`."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("prelabel")


def add_parsers(sub) -> None:
    p = sub.add_parser("preview", help="draw a bulk run's labels into PNGs and one HTML page, most uncertain first",
                       description="Writes DIR/preview/index.html and DIR/preview/NNNNN.png from DIR/journal.jsonl.")
    p.add_argument("dir", metavar="DIR", help="output folder of `prelabel annotate`")
    p.add_argument("--limit", type=int, default=500, help="most images to draw, most uncertain first (%(default)s)")
    p.add_argument("--max-side", type=int, default=800, help="longest side of each picture (%(default)s px)")
    p.add_argument("-v", "--verbose", action="store_true")

    b = sub.add_parser("ls-backend", help="serve Label Studio's ML backend protocol in front of the router",
                       description="Settings: PRELABEL_LS_* environment variables (see prelabel/ls_backend/settings.py).")
    b.add_argument("--host", help="listen address (default $PRELABEL_LS_HOST)")
    b.add_argument("--port", type=int, help="listen port (default $PRELABEL_LS_PORT)")
    b.add_argument("-v", "--verbose", action="store_true")


def preview(args: argparse.Namespace) -> int:
    from prelabel.preview import write_preview

    if args.limit < 1 or args.max_side < 16:
        raise SystemExit("--limit must be >= 1 and --max-side >= 16")
    path = write_preview(args.dir, limit=args.limit, max_side=args.max_side)
    log.info("preview: %s", path)
    print(path)
    return 0


def ls_backend(args: argparse.Namespace) -> int:
    from prelabel.ls_backend.server import main

    return main(host=args.host, port=args.port)


COMMANDS = {"preview": preview, "ls-backend": ls_backend}
