"""`prelabel evaluate` and `prelabel calibrate`: argument parsing and the runs."""
from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone

from prelabel.core.policy_file import write_policy_file
from prelabel.quality import calibrate as cal
from prelabel.quality.bounds import BOUNDS, CLOPPER_PEARSON
from prelabel.quality.drafts import DraftsError, load_drafts
from prelabel.quality.evaluate import Options, evaluate, markdown, write_report
from prelabel.quality.match import match
from prelabel.quality.truth import TruthError, load_truth

log = logging.getLogger("prelabel")

INPUTS_HELP = ("--drafts: `prelabel annotate` output folders (their journal.jsonl) or COCO drafts files; "
               "--truth: corrected labels, COCO json, CVAT 'COCO 1.0' / 'COCO Keypoints 1.0' export "
               "(.json or the .zip), or a Label Studio JSON export; images pair by path or file name")


class QualityInputError(Exception):
    pass


def _unit(value: str) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return v


def _inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drafts", nargs="+", required=True, metavar="PATH", help="annotate output folder(s)")
    p.add_argument("--truth", nargs="+", required=True, metavar="FILE", help="corrected labels file(s)")
    p.add_argument("--iou", type=_unit, default=0.5, help="IoU / OKS at which a draft is right (default %(default)s)")
    p.add_argument("--strict-iou", type=_unit, default=0.75, help="the strict threshold (default %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true")


def add_parsers(sub) -> None:
    e = sub.add_parser("evaluate", help="measure drafts against corrected labels (Markdown + JSON + PNG report)",
                       description=__doc__ + "\n" + INPUTS_HELP)
    _inputs(e)
    e.add_argument("--out", required=True, help="report folder: report.md, report.json, curves/*.png")
    e.add_argument("--review-cost", type=float, default=0.5,
                   help="cost of checking a right draft, relative to drawing an object (default %(default)s)")
    e.add_argument("--no-plots", action="store_true", help="skip the PNG curves")

    c = sub.add_parser("calibrate", help="per-class review bands that reach a target precision -> policy file",
                       description=cal.__doc__ + "\n" + INPUTS_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _inputs(c)
    c.add_argument("--target-precision", type=_unit, default=0.98,
                   help="precision the auto-accepted drafts must reach (default %(default)s)")
    c.add_argument("--confidence", type=_unit, default=0.95, help="confidence of the bound (default %(default)s)")
    c.add_argument("--min-support", type=int, default=200,
                   help="fewest judged drafts of a class to calibrate it; others keep the default band")
    c.add_argument("--bound", choices=BOUNDS, default=CLOPPER_PEARSON, help="lower bound (default %(default)s)")
    c.add_argument("--reject-max-precision", type=_unit, default=0.05,
                   help="drafts below reject_below may be right at most this often (default %(default)s)")
    c.add_argument("--strict", action="store_true", help="right means matched at --strict-iou")
    c.add_argument("--out", required=True, help="policy file to write (.json, or .yaml / .yml)")


def _load(args):
    try:
        drafts, truth = load_drafts(args.drafts), load_truth(args.truth)
    except (DraftsError, TruthError) as exc:
        raise QualityInputError(str(exc)) from None
    m = match(drafts, truth, iou=args.iou, strict_iou=args.strict_iou)
    if not m.pairs:
        raise QualityInputError("no image of the drafts matches an image of the corrected labels "
                                f"(e.g. drafts {sorted(drafts.images)[:3]}, truth {sorted(truth.images)[:3]})")
    return drafts, truth, m


def run_evaluate(args) -> int:
    drafts, truth, m = _load(args)
    report = evaluate(drafts, truth, m, Options(iou=args.iou, strict_iou=args.strict_iou,
                                                review_cost=args.review_cost, plots=not args.no_plots))
    write_report(report, m, args.out, plots=not args.no_plots)
    print(markdown(report))
    return 0


def run_calibrate(args) -> int:
    drafts, truth, m = _load(args)
    settings = cal.Settings(target_precision=args.target_precision, confidence=args.confidence,
                            min_support=args.min_support, bound=args.bound,
                            reject_max_precision=args.reject_max_precision)
    result = cal.calibrate(m.samples(strict=args.strict), settings)
    provenance = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "created_by": "prelabel calibrate",
        "drafts": drafts.sources, "truth": truth.sources, "images": len(m.pairs),
        "models": drafts.models,
        "method": {"target_precision": settings.target_precision, "confidence": settings.confidence,
                   "bound": settings.bound, "min_support": settings.min_support,
                   "reject_max_precision": settings.reject_max_precision,
                   "iou": args.strict_iou if args.strict else args.iou, "grid_step": cal.GRID_STEP,
                   "test": "fixed-sequence over thresholds (see prelabel/quality/calibrate.py)"},
        "classes": [r.to_dict() for r in result.per_task],
        "fallback": result.fallback,
    }
    written = write_policy_file(args.out, result.policy, provenance)
    print(f"wrote {args.out} (policy {written.id}): {len(result.policy.by_category)} classes calibrated, "
          f"{len(result.fallback)} kept the default band")
    for r in result.per_task:
        if r.accept_at is not None:
            print(f"  {r.task:9} {r.category:16} accept_at {r.accept_at:.3f} reject_below {r.reject_below:.3f} "
                  f"support {r.support} accepted {r.accepted} lower bound {r.precision_lower_bound or 0:.4f}"
                  + (f"  ({r.note})" if r.note else ""))
    for cat, why in result.fallback.items():
        print(f"  default band: {cat}: {why}")
    return 0


COMMANDS = {"evaluate": run_evaluate, "calibrate": run_calibrate}
