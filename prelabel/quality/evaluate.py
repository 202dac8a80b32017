"""`prelabel evaluate`: how good the drafts were, measured against what humans kept.

Per task and category:
- AP, AP50, AP75 by pycocotools COCOeval, with each task's iou type (prelabel.core.tasks:
  bbox for detect and faces, segm for segment, keypoints (OKS, COCO's sigmas) for person
  keypoints), and faces' landmarks by OKS with their sigmas (match.OKS_SIGMAS) as
  `coco_landmarks`;
- at the review bands that were served (each draft's `review`): precision and count of
  auto-accepted drafts, their error rate at IoU `iou` and at `strict_iou` and the kinds of
  error (match.py), drafts sent to review and how many were right, rejected drafts that
  were right, truth objects the drafts missed, recall;
- the share of kept drafts that humans had to look at (needs_review / (auto + review)).

Human effort saved, over the judged tasks, against drawing every kept object by hand:

    actions = review_cost * (reviewed drafts that were right)      # a look, then accept
            + (reviewed drafts that were wrong)                    # fixed or deleted
            + (auto-accepted drafts that were wrong)               # found later, fixed
            + (objects drawn from scratch)                         # drawn
    effort saved = 1 - actions / (truth objects)

where the objects drawn are the missed ones (no kept draft matched them) less those a kept
draft of another category was relabelled into: a relabel is one action (counted among the
wrong drafts), not a fix plus a drawing. `missed` itself (in the operating points) still
counts every object no draft of its category found.

with drawing an object as the unit of work and `review_cost` (default 0.5) the cost of
checking a right draft relative to drawing it.

Output in --out: report.json, report.md and curves/<task>_<category>.png (precision of
the drafts scoring >= t, against t, with where the served accept_at lies: the drafts carry
their decisions, not the bands, so it is drawn as the interval between the highest score
not auto-accepted and the lowest auto-accepted one), when matplotlib is installed.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from prelabel.core.tasks import BY_NAME, TASKS, LabelKind
from prelabel.quality.drafts import Drafts
from prelabel.quality.labels import AUTO_ACCEPT, NEEDS_REVIEW, REJECT
from prelabel.quality.match import OKS_SIGMAS, Matching, _rle, truth_for_task
from prelabel.quality.truth import Truth


@dataclass(frozen=True)
class Options:
    iou: float = 0.5
    strict_iou: float = 0.75
    review_cost: float = 0.5
    plots: bool = True


# ------------------------------------------------------------------ COCOeval


def _coco_sets(task: str, m: Matching, drafts: Drafts, truth: Truth, names: list[str],
               keypoints_only: bool) -> tuple[dict, list]:
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    masks = BY_NAME[task].kind is LabelKind.MASK
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in cat_ids.items()]}
    dt: list[dict] = []
    for number, (dkey, tkey) in enumerate(m.pairs, 1):
        dimg, timg = drafts.images[dkey], truth.images[tkey]
        h, w = timg.height or dimg.height, timg.width or dimg.width
        gt["images"].append({"id": number, "file_name": tkey, "width": w, "height": h})
        for a in truth_for_task(timg, task) + [a for a in timg.anns if a.iscrowd]:
            if a.category not in cat_ids:
                continue
            ann = {"id": len(gt["annotations"]) + 1, "image_id": number, "category_id": cat_ids[a.category],
                   "bbox": a.bbox, "area": a.bbox[2] * a.bbox[3], "iscrowd": int(a.iscrowd)}
            if masks:
                ann["segmentation"] = _rle(a, h, w)
            if keypoints_only:
                kps = a.keypoints or [0.0] * (3 * len(OKS_SIGMAS[a.category]))
                ann["keypoints"], ann["num_keypoints"] = kps, int(sum(v > 0 for v in kps[2::3]))
            gt["annotations"].append(ann)
        for a in dimg.anns:
            if a.task != task or a.category not in cat_ids or (keypoints_only and not a.keypoints):
                continue
            d = {"image_id": number, "category_id": cat_ids[a.category], "bbox": a.bbox, "score": a.score}
            if masks:
                d["segmentation"] = _rle(a, h, w)
            if keypoints_only:
                d["keypoints"] = a.keypoints
            dt.append(d)
    return gt, dt


def coco_ap(task: str, m: Matching, drafts: Drafts, truth: Truth, keypoints_of: str | None = None) -> dict:
    """{"all": {AP, AP50, AP75}, category: {...}} for one task (COCOeval); None values
    where a category has no truth object."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    spec = BY_NAME[task]
    keypoints_of = keypoints_of or (spec.category if spec.coco_iou_type == "keypoints" else None)
    iou_type = "keypoints" if keypoints_of else spec.coco_iou_type
    names = [keypoints_of] if keypoints_of else sorted({o.category for o in m.truths if o.task == task})
    if not names:
        return {}
    gt_doc, dt = _coco_sets(task, m, drafts, truth, names, keypoints_only=bool(keypoints_of))
    if not dt or not gt_doc["annotations"]:
        return {}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its tables
        gt = COCO()
        gt.dataset = gt_doc
        gt.createIndex()
        det = gt.loadRes(dt)
        ev = COCOeval(gt, det, iou_type)
        if keypoints_of:
            ev.params.kpt_oks_sigmas = OKS_SIGMAS[keypoints_of]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [iou thresholds, recall, categories, areas, max dets]

    def ap(p: np.ndarray) -> float | None:
        p = p[p > -1]
        return round(float(p.mean()), 4) if p.size else None

    def summary(k) -> dict:
        p = precision[:, :, k, 0, -1]
        return {"AP": ap(p), "AP50": ap(p[0]), "AP75": ap(p[5])}

    out = {"all": summary(slice(None))}
    for k, name in enumerate(names):
        out[name] = summary(k)
    return out


# ------------------------------------------------------------------ operating points


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def operating_points(m: Matching, task: str, category: str | None = None) -> dict:
    ds = [d for d in m.drafts if d.task == task and (category is None or d.category == category)]
    ts = [t for t in m.truths if t.task == task and (category is None or t.category == category)]
    auto = [d for d in ds if d.review == AUTO_ACCEPT]
    review = [d for d in ds if d.review == NEEDS_REVIEW]
    rejected = [d for d in ds if d.review == REJECT]
    errors: dict[str, int] = defaultdict(int)
    for d in auto:
        if not d.correct:
            errors[d.error] += 1
    auto_right = sum(d.correct for d in auto)
    kept = len(auto) + len(review)
    return {
        "drafts": len(ds), "truth_objects": len(ts),
        "auto_accepted": len(auto), "auto_accepted_right": auto_right,
        "auto_accept_precision": _rate(auto_right, len(auto)),
        "auto_accept_error_rate": _rate(len(auto) - auto_right, len(auto)),
        "auto_accept_error_rate_strict": _rate(sum(not d.correct_strict for d in auto), len(auto)),
        "auto_accept_errors": dict(sorted(errors.items())),
        "needs_review": len(review), "needs_review_right": sum(d.correct for d in review),
        "rejected": len(rejected), "rejected_right": sum(d.correct for d in rejected),
        "kept_precision": _rate(auto_right + sum(d.correct for d in review), kept),
        "recall_auto_accepted": _rate(auto_right, len(ts)),
        "recall_kept": _rate(sum(t.found for t in ts), len(ts)),
        "missed": sum(not t.found for t in ts),
        "share_reviewed": _rate(len(review), kept),
        "served_accept_at_max": round(min(d.score for d in auto), 4) if auto else None,
        "served_accept_at_above": round(max(d.score for d in review + rejected), 4) if review or rejected else None,
    }


def effort(m: Matching, review_cost: float) -> dict:
    reviewed_right = sum(d.correct for d in m.drafts if d.review == NEEDS_REVIEW)
    reviewed_wrong = sum(not d.correct for d in m.drafts if d.review == NEEDS_REVIEW)
    auto_wrong = sum(not d.correct for d in m.drafts if d.review == AUTO_ACCEPT)
    missed = sum(not t.found for t in m.truths)
    relabelled = sum(t.relabelled for t in m.truths)
    drawn = missed - relabelled
    objects = len(m.truths)
    actions = review_cost * reviewed_right + reviewed_wrong + auto_wrong + drawn
    return {
        "formula": "1 - (review_cost * reviewed_right + reviewed_wrong + auto_accepted_wrong + drawn) "
                   "/ truth_objects",
        "review_cost": review_cost, "reviewed_right": reviewed_right, "reviewed_wrong": reviewed_wrong,
        "auto_accepted_wrong": auto_wrong, "drawn": drawn, "missed": missed,
        "fixed_by_relabelling": relabelled, "truth_objects": objects,
        "actions": round(actions, 2),
        "effort_saved": round(1 - actions / objects, 4) if objects else None,
    }


# ------------------------------------------------------------------ report


def evaluate(drafts: Drafts, truth: Truth, m: Matching, opts: Options) -> dict:
    tasks = {}
    for spec in TASKS:
        task = spec.name
        cats = sorted({d.category for d in m.drafts if d.task == task}
                      | {t.category for t in m.truths if t.task == task})
        if not cats:
            continue
        ap = coco_ap(task, m, drafts, truth)
        entry = {"coco": ap, "all": operating_points(m, task),
                 "classes": {c: {**operating_points(m, task, c), **(ap.get(c) or {})} for c in cats}}
        # A keypoint task scored by its boxes (faces) has its points scored by OKS beside.
        landmarks = spec.category if spec.kind is LabelKind.KEYPOINTS and spec.coco_iou_type != "keypoints" else None
        if landmarks is not None and any(a.has_keypoints for img in truth.images.values() for a in img.anns
                                         if a.category == landmarks):
            entry["coco_landmarks"] = coco_ap(task, m, drafts, truth, keypoints_of=landmarks)
        tasks[task] = entry
    return {
        "inputs": {"drafts": drafts.sources, "truth": truth.sources, "models": sorted(drafts.models),
                   "iou": opts.iou, "strict_iou": opts.strict_iou},
        "images": {"paired": len(m.pairs), "drafts_without_truth": len(m.unpaired_drafts),
                   "truth_without_drafts": len(m.unpaired_truth)},
        "outside_label_space": m.outside_label_space,
        "tasks_without_truth": m.tasks_without_truth,
        "truth_skipped": truth.skipped,
        "tasks": tasks,
        "effort": effort(m, opts.review_cost),
    }


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    i, e = report["inputs"], report["effort"]
    lines = ["# Pre-label quality report", "",
             f"Drafts: {', '.join(i['drafts'])}; corrected labels: {', '.join(i['truth'])}; "
             f"models: {', '.join(i['models']) or '-'}.",
             f"Images paired: {report['images']['paired']} (drafts without truth: "
             f"{report['images']['drafts_without_truth']}, truth without drafts: "
             f"{report['images']['truth_without_drafts']}). A draft is right when it matches a kept "
             f"object at IoU/OKS >= {i['iou']} (strict: {i['strict_iou']}).", "",
             f"**Human effort saved: {_fmt(e['effort_saved'])}** = {e['formula']}, with review_cost "
             f"{e['review_cost']}: reviewed right {e['reviewed_right']}, reviewed wrong {e['reviewed_wrong']}, "
             f"auto-accepted wrong {e['auto_accepted_wrong']}, drawn {e['drawn']} (missed {e['missed']}, "
             f"less {e['fixed_by_relabelling']} fixed by relabelling a wrong draft), of "
             f"{e['truth_objects']} objects.", ""]
    cols = ["AP", "AP50", "AP75", "drafts", "auto_accepted", "auto_accept_precision", "auto_accept_error_rate",
            "auto_accept_error_rate_strict", "needs_review", "share_reviewed", "recall_kept", "missed"]
    for task, entry in report["tasks"].items():
        lines += [f"## {task}", "", "| class | " + " | ".join(cols) + " | auto-accept errors |",
                  "|---" * (len(cols) + 2) + "|"]
        rows = [("all", {**entry["all"], **(entry["coco"].get("all") or {})})] + list(entry["classes"].items())
        for name, row in rows:
            errs = ", ".join(f"{k} {v}" for k, v in row.get("auto_accept_errors", {}).items()) or "-"
            lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in cols) + f" | {errs} |")
        for kp, values in (("face landmarks", entry.get("coco_landmarks")),):
            if values:
                lines += ["", f"{kp} (OKS) AP: " + ", ".join(
                    f"{name}: AP {_fmt(v['AP'])}, AP50 {_fmt(v['AP50'])}, AP75 {_fmt(v['AP75'])}"
                    for name, v in values.items())]
        lines.append("")
    if report["tasks_without_truth"]:
        lines += ["Tasks without corrected labels (not judged): " + ", ".join(report["tasks_without_truth"]), ""]
    if report["outside_label_space"]:
        lines += ["Drafts of categories the corrected labels do not cover (not judged): " + ", ".join(
            f"{k} {v}" for k, v in sorted(report["outside_label_space"].items())), ""]
    return "\n".join(lines)


def precision_curve(scores: np.ndarray, correct: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Precision of the drafts scoring >= t for each t (NaN where none does)."""
    out = np.full(len(grid), np.nan)
    for i, t in enumerate(grid):
        sel = scores >= t
        if sel.any():
            out[i] = correct[sel].mean()
    return out


@dataclass(frozen=True)
class AcceptSpan:
    """Where the served accept_at of a class lies, as its drafts' decisions show it."""

    low: float
    high: float
    legend: str


def served_accept_at_span(above: float | None, at_most: float | None) -> AcceptSpan | None:
    """From the highest score not auto-accepted (`above`) and the lowest auto-accepted one
    (`at_most`): the served accept_at is in (above, at_most]."""
    if at_most is None and above is None:
        return None
    low, high = (0.0 if above is None else above), (1.0 if at_most is None else at_most)
    if at_most is None:
        legend = f"served accept_at > {low:.2f} (none auto-accepted)"
    elif above is None:
        legend = f"served accept_at <= {high:.2f} (none reviewed)"
    else:
        legend = f"served accept_at in ({low:.2f}, {high:.2f}]"
    return AcceptSpan(low, high, legend + "\nfrom the drafts' decisions")


def plot_curves(m: Matching, report: dict, out_dir: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(os.path.join(out_dir, "curves"), exist_ok=True)
    written = []
    grid = np.linspace(0, 1, 101)
    for (task, cat), (scores, correct) in sorted(m.samples().items()):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(grid, precision_curve(scores, correct, grid), label="precision of drafts >= t")
        row = report["tasks"].get(task, {}).get("classes", {}).get(cat, {})
        span = served_accept_at_span(row.get("served_accept_at_above"), row.get("served_accept_at_max"))
        if span is not None:
            ax.axvspan(span.low, span.high, color="grey", alpha=0.3, label=span.legend)
        ax.set(xlabel="score threshold t", ylabel="precision", ylim=(0, 1.02), xlim=(0, 1),
               title=f"{task} / {cat} ({len(scores)} drafts)")
        ax.legend(loc="lower right", fontsize=8)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{task}_{cat}")
        path = os.path.join(out_dir, "curves", f"{safe}.png")
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def write_report(report: dict, m: Matching, out_dir: str, plots: bool = True) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    report["curves"] = [os.path.relpath(p, out_dir) for p in plot_curves(m, report, out_dir)] if plots else []
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2, ensure_ascii=False)
    with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as fh:
        fh.write(markdown(report) + "\n")
    return report
