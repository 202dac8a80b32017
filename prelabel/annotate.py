"""`prelabel annotate`: pre-label many images, resumably, into COCO / YOLO / Label Studio
files. Usage and exit codes: DESCRIPTION (what `prelabel annotate --help` shows)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence

from prelabel import formats
from prelabel.atomic import atomic_write_text
from prelabel.bulk import BulkOptions, BulkRunner, Tally
from prelabel.core.limits import MAX_IMAGE_BYTES
from prelabel.core.policy_file import PolicyFileError, load_policy_file
from prelabel.core.review import policy_to_proto
from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, REVIEW_CHOICES
from prelabel.formats.polygons import DEFAULT_TOLERANCE_PX, MAX_VERTICES
from prelabel.inputs import (
    InputError,
    InputImage,
    check_shard,
    expand_inputs,
    select_shard,
)
from prelabel.journal import STATUS_OK, STATUS_REJECTED, Journal, fsync_dir, json_text, response_of
from prelabel.run_summary import LabelCounts, RunSummary
from prelabel.sdk import DEFAULT_ADDRESS, TASKS, PreLabelClient, bearer_metadata, parse_tasks

log = logging.getLogger("prelabel")

DESCRIPTION = """`prelabel` command line.

    prelabel annotate PATH... --out DIR [--tasks detect,segment,keypoints,faces]
        [--manifest FILE] [--shard-index I --shard-count N] [--router HOST:PORT]
        [--concurrency N] [--formats coco,yolo,labelstudio] [--score-threshold X] [--cascade]
        [--review-policy FILE] [--outputs-review auto_accept,needs_review] [--polygon-tolerance PX]
        [--token-file FILE] [--patience-s S]

Growing folders: run it again on a finished DIR (`_SUCCESS` there) with the same parameters
and it labels just the images its journal does not hold yet, then rewrites the outputs from
the journal (every image of the inputs; other output flags, e.g. --formats, rewrite them
too). The labelling parameters (--tasks, --score-threshold, --cascade, --review-policy, the
shard) must stay those that started DIR: with others it exits 2 naming them; label into
another --out, or delete DIR to start over.

Outputs: YOLO and Label Studio take the labels whose review decision --outputs-review names
(default auto_accept,needs_review: no rejected draft, even when the review policy has
include_rejected); the journal and the COCO files keep every label, for `prelabel calibrate`.

Exit codes of `annotate`:
  0   the shard is complete and every image was labelled (also: DIR was already complete
      and up to date, nothing to do);
  1   fatal error (output folder unusable, journal unwritable, unexpected exception);
  2   usage error (bad flag, input path that names nothing, labelling parameters that differ
      from the run that started DIR); or the router refused the run itself (UNAUTHENTICATED,
      PERMISSION_DENIED: the token; UNIMPLEMENTED): stopped at once, nothing retried;
  3   some images failed for a passing reason (timeouts, the suite unavailable for longer
      than --patience-s) after their retries: listed in DIR/failures.jsonl, no `_SUCCESS`;
      run again to finish them;
  4   the shard is complete (`_SUCCESS` written) but some images were rejected (bad image,
      unreadable file): listed in DIR/failures.jsonl, left out of the outputs;
  75  another process holds DIR (its lock) -- e.g. a pod still terminating;
  130 / 143  interrupted (SIGINT / SIGTERM) after finishing the images in flight.
"""

JOURNAL_FILE = "journal.jsonl"
FAILURES_FILE = "failures.jsonl"
SUCCESS_FILE = "_SUCCESS"
PARAMS_FILE = "params.json"
LOCK_FILE = ".lock"

#: Environment variable with the router's bearer token (`--token-file` wins).
TOKEN_ENV = "PRELABEL_TOKEN"

EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_FAILED, EXIT_REJECTED, EXIT_LOCKED = 0, 1, 2, 3, 4, 75
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
#: How long to wait for in-flight images after SIGTERM/SIGINT (the Job's grace is 30 s).
STOP_GRACE_S = 20.0


class UsageError(Exception):
    """A bad command line or input: `prelabel` exits EXIT_USAGE (2) with the message."""


def _csv(choices: Sequence[str]):
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)} (got {value!r})")
        return list(dict.fromkeys(items))
    return parse


def add_parser(sub) -> None:
    """The `annotate` subcommand of `prelabel`."""
    a = sub.add_parser(
        "annotate", help="pre-label many images, resumably, into COCO / YOLO / Label Studio files",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders (recursive) or globs")
    a.add_argument("--manifest", help="file listing one image path per line (relative to the file's folder)")
    a.add_argument("--out", required=True, help="output folder of this shard (journal, outputs, _SUCCESS)")
    a.add_argument("--tasks", type=_csv(list(TASKS)), default=list(TASKS),
                   help="comma-separated: detect,segment,keypoints,faces (default: all)")
    a.add_argument("--router", default=os.environ.get("PRELABEL_ROUTER", DEFAULT_ADDRESS),
                   help="router address HOST:PORT (default: $PRELABEL_ROUTER or %(default)s)")
    a.add_argument("--concurrency", type=int, default=8,
                   help="most images in flight at once; halved while the suite is overloaded (default %(default)s)")
    a.add_argument("--shard-index", type=int, default=0, help="this shard, in [0, shard-count)")
    a.add_argument("--shard-count", type=int, default=1,
                   help="number of shards; an image's shard is SHA-256(image id) mod shard-count")
    a.add_argument("--formats", type=_csv(list(formats.WRITERS)), default=list(formats.WRITERS),
                   help="comma-separated: coco,yolo,labelstudio (default: all; coco adds cvat_labels.json; "
                        "review_queue.jsonl always)")
    a.add_argument("--score-threshold", type=float, default=None, help="minimum label score in [0, 1]")
    a.add_argument("--cascade", action="store_true",
                   help="prompt segmentation and keypoints with the detected boxes")
    a.add_argument("--review-policy", metavar="FILE",
                   help="review-policy file (`prelabel calibrate` output) sent with every image; "
                        "default: the router's policy")
    a.add_argument("--timeout-s", type=float, default=120.0,
                   help="per-image deadline, and longest silence of the stream (default %(default)s)")
    a.add_argument("--attempts", type=int, default=5,
                   help="tries per image in one run for passing failures (default %(default)s)")
    a.add_argument("--max-image-bytes", type=int, default=MAX_IMAGE_BYTES)
    a.add_argument("--ls-image-prefix", default=None,
                   help="prefix of data.image in labelstudio.json (default: Label Studio local files, "
                        "/data/local-files/?d=); e.g. s3://bucket/photos/ for cloud storage")
    a.add_argument("--image-root", default=None,
                   help="folder image names in the outputs are relative to (default: the deepest folder "
                        "holding every input); see docs/tools.md")
    a.add_argument("--ls-masks", choices=["polygon", "brush"], default="polygon",
                   help="Label Studio masks as polygons or brush RLE (default %(default)s)")
    a.add_argument("--yolo-val-fraction", type=formats.val_fraction, default=0.0,
                   help="share of images in the YOLO val split, by image-id hash (default: val = train)")
    a.add_argument("--outputs-review", type=_csv(REVIEW_CHOICES), default=list(DEFAULT_OUTPUTS_REVIEW),
                   help="comma-separated review decisions whose labels go into the YOLO and Label Studio "
                        "outputs: auto_accept,needs_review,reject (default: auto_accept,needs_review, no "
                        "rejected draft); the journal and the COCO files keep every label")
    a.add_argument("--polygon-tolerance", type=formats.polygon_tolerance, default=DEFAULT_TOLERANCE_PX,
                   metavar="PX",
                   help="simplify mask polygons (YOLO segment, Label Studio) so no dropped vertex is further than "
                        f"PX pixels from the outline, at most {MAX_VERTICES} vertices; 0 keeps the traced pixel "
                        "staircase (default %(default)s); COCO masks stay exact RLE")
    a.add_argument("--tls", action="store_true", help="connect with TLS")
    a.add_argument("--ca-cert", help="PEM roots for TLS (default: system roots)")
    a.add_argument("--client-cert", help="PEM client certificate chain (mTLS)")
    a.add_argument("--client-key", help="PEM client private key (mTLS)")
    a.add_argument("--lock-timeout-s", type=float, default=60.0,
                   help="how long to wait for another process holding --out (default %(default)s)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.add_argument("-v", "--verbose", action="store_true")
    a.add_argument("--token-file", metavar="FILE",
                   help=f"file holding the router's bearer token (PRELABEL_AUTH_TOKENS); default: "
                        f"${TOKEN_ENV}. Sent as `authorization: Bearer`, never logged")
    a.add_argument("--patience-s", type=float, default=600.0,
                   help="how long the run holds its images while the suite answers UNAVAILABLE (Triton "
                        "restarting, a rollout), probing with one, before it gives up on them "
                        "(default %(default)s)")


# ---------------------------------------------------------------------------- helpers


def _lock(out_dir: str, timeout_s: float) -> int | None:
    fd = os.open(os.path.join(out_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.5)


def _clean_stale_temps(out_dir: str) -> None:
    """Remove what an earlier, killed run left half-made (temp files and folders)."""
    for path in glob.glob(os.path.join(out_dir, ".*.tmp-*")) + glob.glob(os.path.join(out_dir, "*.old-*")):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _check_params(out_dir: str, params: dict) -> None:
    """The journal of DIR is only valid for the parameters that started it."""
    path = os.path.join(out_dir, PARAMS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            previous = json.load(fh)
        if previous != params:
            changed = sorted(k for k in set(previous) | set(params) if previous.get(k) != params.get(k))
            differences = "; ".join(f"{k}: {previous.get(k)!r} there, {params.get(k)!r} now" for k in changed)
            raise UsageError(
                f"{out_dir} holds a run with other parameters ({differences}): its journal only fits "
                f"those, so it cannot take these images. Label into another --out, or delete {out_dir} "
                "to start over")
    else:
        atomic_write_text(path, json.dumps(params, indent=2) + "\n")


def _read_pem(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read()


def _bearer_token(path: str | None) -> str | None:
    """The token from --token-file (surrounding blanks and the final newline dropped) or
    $PRELABEL_TOKEN; None when neither is given. A bad one is a usage error that never
    repeats it."""
    if path is None:
        token, source = os.environ.get(TOKEN_ENV), f"${TOKEN_ENV}"
        if token is None:
            return None
    else:
        try:
            with open(path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {path}: {getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        source = f"--token-file {path}"
    try:
        bearer_metadata(token)
    except ValueError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return token


def _write_failures(out_dir: str, journal: Journal, shard: list[InputImage], tally: Tally | None) -> tuple[int, int]:
    """DIR/failures.jsonl: every image of the shard that is rejected (journal) or not
    labelled (this run's failures, or never reached). Returns (rejected, not labelled)."""
    rejected = not_labelled = 0
    lines = []
    for image in shard:
        entry = journal.index.get(image.image_id)
        if entry is not None and entry.status == STATUS_OK:
            continue
        if entry is not None and entry.status == STATUS_REJECTED:
            record = journal.read(image.image_id)
            line = {"image_id": image.image_id, "path": image.path, "retryable": False,
                    "reason": record.get("reason", "")}
            rejected += 1
        else:
            failure = tally.failures.get(image.image_id) if tally else None
            line = {"image_id": image.image_id, "path": image.path, "retryable": True,
                    "reason": failure.reason if failure else "not labelled: run ended before it",
                    "attempts": failure.attempts if failure else 0}
            not_labelled += 1
        lines.append(json_text(line) + "\n")
    atomic_write_text(os.path.join(out_dir, FAILURES_FILE), "".join(lines))
    return rejected, not_labelled


def _finished(journal: Journal, shard: list[InputImage]):
    ok_ids = [im.image_id for im in shard
              if (e := journal.index.get(im.image_id)) is not None and e.status == STATUS_OK]
    numbers = {im.image_id: n for n, im in enumerate(shard, start=1)}
    for record in journal.records(ok_ids):
        yield numbers[record["image_id"]], record["image_id"], record.get("path", ""), response_of(record)


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        self.failed = 0
        if enabled:
            from tqdm import tqdm

            tty = sys.stderr.isatty()
            self.bar = tqdm(total=total, initial=initial, unit="img", dynamic_ncols=True,
                            mininterval=0.5 if tty else 30.0, file=sys.stderr)

    def __call__(self, kind: str) -> None:
        if kind != "ok":
            self.failed += 1
        if self.bar is not None:
            self.bar.update(1)
            if self.failed:
                self.bar.set_postfix(not_ok=self.failed, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _logging_beside(progress: _Progress):
    """Log lines above the progress bar instead of through it."""
    if progress.bar is None:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


# ---------------------------------------------------------------------------- annotate


async def _label(args, journal: Journal, todo: list[InputImage], progress: _Progress) -> tuple[Tally, int]:
    tasks = parse_tasks(args.tasks)
    options = BulkOptions(
        tasks=tasks, window=args.concurrency, score_threshold=args.score_threshold, cascade=args.cascade,
        include_polygons="segment" in args.tasks, timeout_s=args.timeout_s, attempts=args.attempts,
        max_image_bytes=args.max_image_bytes, connect_timeout_s=min(30.0, args.timeout_s),
        patience_s=args.patience_s,
        review_policy=policy_to_proto(args.loaded_review_policy.policy) if args.loaded_review_policy else None)
    client = PreLabelClient(
        args.router, timeout_s=args.timeout_s, tls=args.tls, root_certificates=_read_pem(args.ca_cert),
        certificate_chain=_read_pem(args.client_cert), private_key=_read_pem(args.client_key),
        token=args.bearer_token)
    runner = BulkRunner(client, journal, options, on_done=progress)
    loop = asyncio.get_running_loop()
    run = asyncio.ensure_future(runner.run(todo))
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            log.warning("signal %d: finishing the %s images in flight, then stopping", signum, args.concurrency)
            runner.stop()
            loop.call_later(STOP_GRACE_S, run.cancel)
        else:
            run.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        tally = await run
    except asyncio.CancelledError:
        tally = runner.tally
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await client.close()
    return tally, (received[0] if received else 0)


def _review_policy(path: str | None):
    """The --review-policy file, validated as the servers would (a bad one: usage error)."""
    if not path:
        return None
    try:
        return load_policy_file(path)
    except PolicyFileError as exc:
        raise UsageError(str(exc)) from None


def _read_success(out_dir: str) -> dict | None:
    """What DIR/_SUCCESS says of the finished shard (None: not finished)."""
    try:
        with open(os.path.join(out_dir, SUCCESS_FILE), encoding="utf-8") as fh:
            summary = json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError:
        return {}  # unreadable: rewrite it
    return summary if isinstance(summary, dict) else {}


def _unfinish(out_dir: str) -> None:
    """Remove DIR/_SUCCESS (durably) before DIR changes: until its outputs are rewritten it
    does not vouch for them."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(out_dir, SUCCESS_FILE))
        fsync_dir(out_dir)


def _outputs_record(args, inputs: list[InputImage], shard: list[InputImage]) -> dict:
    """What the outputs of DIR are made from: the shard's images and the output flags
    (kept in _SUCCESS; a finished DIR whose record differs gets its outputs rewritten)."""
    ids = hashlib.sha256("\n".join(sorted(im.image_id for im in shard)).encode("utf-8", "surrogateescape"))
    return {"images_sha256": ids.hexdigest(), "formats": args.formats,
            **formats.options_from_args(args, inputs)}


def run(args) -> int:
    """Run `prelabel annotate`; returns its exit code (UsageError: a usage error, exit 2)."""
    started = time.monotonic()
    out_dir = args.out
    if args.concurrency < 1 or args.attempts < 1:
        raise UsageError("--concurrency and --attempts must be >= 1")
    if not args.patience_s >= 0:
        raise UsageError("--patience-s must be >= 0")
    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        # Checked here: the router would reject every image for it, and rejections stick.
        raise UsageError("--score-threshold must be in [0, 1]")
    if not args.paths and not args.manifest:
        raise UsageError("give image paths, folders, globs or --manifest")
    # Read once: the policy params.json records is the one sent.
    policy = args.loaded_review_policy = _review_policy(args.review_policy)
    args.bearer_token = _bearer_token(args.token_file)
    try:
        check_shard(args.shard_index, args.shard_count)
    except InputError as exc:
        raise UsageError(str(exc)) from None
    os.makedirs(out_dir, exist_ok=True)
    lock_fd = _lock(out_dir, args.lock_timeout_s)
    if lock_fd is None:
        log.error("another process holds %s", out_dir)
        return EXIT_LOCKED
    try:
        _clean_stale_temps(out_dir)
        try:
            inputs = expand_inputs(args.paths, args.manifest)
            shard = select_shard(inputs, args.shard_index, args.shard_count)
        except (InputError, OSError) as exc:
            raise UsageError(str(exc)) from None
        _check_params(out_dir, {
            "tasks": sorted(args.tasks), "score_threshold": args.score_threshold, "cascade": args.cascade,
            "shard_index": args.shard_index, "shard_count": args.shard_count,
            **({"review_policy_id": policy.id} if policy else {})})
        outputs = _outputs_record(args, inputs, shard)
        finished_before = _read_success(out_dir)
        with Journal(os.path.join(out_dir, JOURNAL_FILE)) as journal:
            todo = [im for im in shard if im.image_id not in journal.index]
            labelled_before = sum(1 for im in shard if (e := journal.index.get(im.image_id)) and e.status == STATUS_OK)
            if finished_before is not None:
                if not todo and finished_before.get("outputs") == outputs:
                    log.info("%s is complete and up to date: nothing to do", out_dir)
                    return EXIT_OK
                _unfinish(out_dir)
                log.info("%s was complete: %d new images to label, then the outputs are rewritten", out_dir,
                         len(todo))
            log.info("shard %d/%d: %d images, %d already done, %d to label", args.shard_index,
                     args.shard_count, len(shard), len(shard) - len(todo), len(todo))
            tally, signum = None, 0
            if todo:
                progress = _Progress(len(shard), len(shard) - len(todo), not args.no_progress)
                try:
                    with _logging_beside(progress):
                        tally, signum = asyncio.run(_label(args, journal, todo, progress))
                finally:
                    progress.close()
            journal.sync()
            rejected, not_labelled = _write_failures(out_dir, journal, shard, tally)
            if tally is not None and tally.stopped is not None:
                log.error("the router refused this run (%s), so no image can succeed: check the token "
                          "(--token-file or $%s), what it may call, and --router", tally.stopped, TOKEN_ENV)
                return EXIT_USAGE
            labelled_now = tally.ok if tally else 0

            def summary(counts: LabelCounts | None) -> RunSummary:
                return RunSummary(out_dir=out_dir, images=len(shard), labelled_now=labelled_now,
                                  labelled_before=labelled_before,
                                  rejected=rejected, not_labelled=not_labelled,
                                  seconds=time.monotonic() - started, formats=args.formats, counts=counts)

            if signum or not_labelled:
                print(summary(None).text(), end="", flush=True)
            if signum:
                return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
            if not_labelled:
                log.error("%d images not labelled (see %s); run again to finish them",
                          not_labelled, os.path.join(out_dir, FAILURES_FILE))
                return EXIT_FAILED
            counts = LabelCounts(review=args.outputs_review)
            written = formats.write_outputs(out_dir, args.formats, counts.counting(_finished(journal, shard)),
                                            tasks=args.tasks, **formats.options_from_args(args, inputs))
        success = {"images": len(shard), "labelled": written, "rejected": rejected,
                   "tasks": args.tasks, "formats": args.formats,
                   "shard_index": args.shard_index, "shard_count": args.shard_count, "outputs": outputs}
        atomic_write_text(os.path.join(out_dir, SUCCESS_FILE), json.dumps(success, indent=2) + "\n")
        log.info("shard complete: %d labelled, %d rejected -> %s", written, rejected, out_dir)
        print(summary(counts).text(), end="", flush=True)
        return EXIT_REJECTED if rejected else EXIT_OK
    finally:
        os.close(lock_fd)
