"""Targets, bench.json, bench.md and the PNG plots."""
from __future__ import annotations

import json
import math
from pathlib import Path


def _num(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def row(key: str, name: str, measured, unit: str, target: str, passed, note: str = "") -> dict:
    return {"key": key, "name": name, "measured": measured, "unit": unit, "target": target,
            "pass": passed, "note": note}


def targets(c: dict, stages: dict) -> list[dict]:
    """One row per target (pass True/False, or None where not measured or informational)."""
    rows = []
    s = c.get("suite_overhead", {})
    if s.get("measured"):
        rows.append(row("suite_overhead", f"Suite / bare Triton throughput ({s['model']}, concurrency {s['concurrency']})",
                        s["ratio"], "x", ">= 0.9", s["ratio"] >= 0.9,
                        f"suite {s['variants']['suite']['throughput_rps']:.1f} img/s vs bare tritonclient "
                        f"{s['variants']['bare_triton']['throughput_rps']:.1f} img/s"))
    else:
        rows.append(row("suite_overhead", "Suite / bare Triton throughput", None, "x", ">= 0.9", None, s.get("reason", "")))

    h = c.get("hop_latency", {})
    if h.get("measured"):
        rows.append(row("hop_added_latency", "Added latency per hop, p50 (tiny JPEG, bench_identity, concurrency 1)",
                        h["added_ms_tiny"], "ms", "<= 1", h["added_ms_tiny"] <= 1.0,
                        f"Detect {h['variants']['suite_tiny']['p50_ms']:.2f} ms vs bare tritonclient "
                        f"{h['variants']['bare_triton']['p50_ms']:.2f} ms; decode+letterbox in-process "
                        f"{h['prepare_ms_tiny']:.2f} ms; inside the service (mean): "
                        + ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(h['variants']['suite_tiny'].get('service_stage_ms', {}).items()))))
        rows.append(row("hop_added_latency_photo", f"Added latency per hop, p50 ({h['photo']}, same model)",
                        h["added_ms_photo"], "ms", "info", None,
                        f"of which decode+letterbox in-process {h['prepare_ms_photo']:.2f} ms; "
                        f"hop without decode {h['added_ms_photo'] - h['prepare_ms_photo']:.2f} ms"))
    else:
        rows.append(row("hop_added_latency", "Added latency per hop", None, "ms", "<= 1", None, h.get("reason", "")))

    b = c.get("dynamic_batching", {})
    if b.get("measured"):
        rows.append(row("batching_throughput", f"Dynamic batching on / off throughput ({b['model']}, concurrency {b['concurrency']})",
                        b["ratio"], "x", ">= 1.0", b["ratio"] >= 1.0,
                        f"on {b['variants']['on']['throughput_rps']:.1f} img/s, off {b['variants']['off']['throughput_rps']:.1f} img/s; "
                        f"batches formed {b['batch_sizes_on']}"))
        rows.append(row("batching_p95", "Dynamic batching p95 (on)", b["variants"]["on"]["p95_ms"], "ms",
                        f"<= p95 off + max_queue_delay + one batch = {b['p95_bound_ms']:.0f}", b["p95_pass"],
                        f"p95 off {b['variants']['off']['p95_ms']:.0f} ms, max_queue_delay {b['max_queue_delay_ms']:.1f} ms, "
                        f"one batch of {b['largest_batch']} {b['largest_batch_ms']:.0f} ms"))
    else:
        rows.append(row("batching_throughput", "Dynamic batching on / off throughput", None, "x", ">= 1.0", None, b.get("reason", "")))

    f = c.get("fanout", {})
    if f.get("measured"):
        rows.append(row("fanout", "Fan-out: router p50 (all tasks) / slowest single-service p50", f["ratio"], "x",
                        "<= 1.15", f["ratio"] <= 1.15,
                        f"router {f['router_p50_ms']:.1f} ms, slowest single ({f['slowest_single']}) {f['slowest_single_p50_ms']:.1f} ms"))
    else:
        rows.append(row("fanout", "Fan-out: router p50 (all tasks) / slowest single-service p50", None, "x", "<= 1.15",
                        None, f.get("reason", "")))

    k = c.get("bulk", {})
    if k.get("measured"):
        rows.append(row("bulk_throughput", f"Bulk: prelabel annotate (detect) / NanoDet in-process ({k['images']} images)",
                        k["ratio"], "x", ">= 0.8", k["ratio"] >= 0.8,
                        f"annotate {k['suite_ips']:.1f} img/s (router, service, Triton, journal, COCO) vs "
                        f"onnxruntime in-process {k['in_process_ips']:.1f} img/s ({k['threads_in_process']} threads), "
                        f"same decode + letterbox"))
    else:
        rows.append(row("bulk_throughput", "Bulk: prelabel annotate (detect) / NanoDet in-process", None, "x", ">= 0.8",
                        None, k.get("reason", "not measured (full run only)")))

    rows += byom_rows(c)

    p = c.get("payload", {})
    if p.get("measured"):
        rows.append(row("payload", "Payload cost per MB: Detect / bare grpc.aio echo", p["ratio"], "x", "<= 1.3",
                        p["ratio"] <= 1.3,
                        f"Detect {p['suite_ms_per_mb']:.2f} ms/MB (of which decode+letterbox "
                        f"{p['decode_ms_per_mb']:.2f} ms/MB, from the {p['decode_ms_per_mb_source']}), "
                        f"echo {p['echo_ms_per_mb']:.2f} ms/MB; {p['big']['name']} vs {p['tiny']['name']}"))
        rows.append(row("payload_no_decode", "Payload cost per MB without the decode: Detect / echo",
                        p["ratio_without_decode"], "x", "info", None,
                        f"Detect minus decode+letterbox: {p['suite_ms_per_mb'] - p['decode_ms_per_mb']:.2f} ms/MB"))
    else:
        rows.append(row("payload", "Payload cost per MB: Detect / bare echo", None, "x", "<= 1.3", None, p.get("reason", "")))

    for name, st in stages.items():
        if name.startswith("big_"):
            rows.append(row("decode_gain", f"Reduced-scale JPEG decode gain ({name}, {st['bytes'] / 1e6:.2f} MB)",
                            st["reduced_decode_gain"], "x", "info (> 1)", st["reduced_decode_gain"] > 1.0,
                            f"full {st['stages']['decode_full']['median_ms']:.1f} ms, reduced "
                            f"{st['stages']['decode_reduced']['median_ms']:.1f} ms (decoded at {st['decoded_size'][0]}x{st['decoded_size'][1]})"))
            rows.append(row("decode_ms_per_mp", f"Full JPEG decode per megapixel ({name})", st["decode_full_ms_per_mp"],
                            "ms/MP", "peers 7-10", st["decode_full_ms_per_mp"] <= 10.0, "single thread, Pillow"))
    for name, st in stages.items():
        rows.append(row(f"serving_cpu_{name}", f"Serving-path CPU per image outside the model ({name})",
                        st["serving_path_cpu_ms"], "ms", "info", None,
                        "decode " + f"{st['stages']['decode_reduced']['median_ms']:.2f} + letterbox "
                        f"{st['stages']['letterbox']['median_ms']:.2f} + request/serialize "
                        f"{st['stages']['triton_request_build']['median_ms'] + st['stages']['triton_request_serialize']['median_ms'] + st['stages']['detect_request_parse']['median_ms']:.2f}"
                        f" + postprocess {st['stages']['postprocess']['median_ms']:.2f}"))
    return rows


def byom_rows(c: dict) -> list[dict]:
    """Bring your own model (issue 18, bench/byom.py): suite / in-process, batching on / off."""
    rows = []
    t = c.get("byom_throughput", {})
    if t.get("measured"):
        v = t["variants"]
        rows.append(row("byom_throughput", f"User model: Detect / the same ONNX in-process ({t['export']}, "
                        f"concurrency {t['concurrency']})", t["ratio"], "x", ">= 0.9", t["ratio"] >= 0.9,
                        f"suite {v['suite']['throughput_rps']:.2f} img/s vs onnxruntime in-process "
                        f"{v['in_process']['throughput_rps']:.2f} img/s ({t['threads_in_process']} threads); {t['weights']}"))
    else:
        rows.append(row("byom_throughput", "User model: Detect / the same ONNX in-process", None, "x", ">= 0.9", None,
                        t.get("reason", "not measured")))
    b = c.get("byom_batching", {})
    if b.get("measured"):
        v = b["variants"]
        rows.append(row("byom_batching", f"User model, dynamic batch export: batching on / off ({b['export']}, "
                        f"concurrency {b['concurrency']})", b["ratio"], "x", "report the gain", None,
                        f"on {v['on']['throughput_rps']:.2f} img/s, off {v['off']['throughput_rps']:.2f} img/s; "
                        f"batches formed {b['batch_sizes_on']}"))
    else:
        rows.append(row("byom_batching", "User model, dynamic batch export: batching on / off", None, "x",
                        "report the gain", None, b.get("reason", "not measured")))
    return rows


def _fmt(x, unit: str) -> str:
    if x is None:
        return "—"
    if not _num(x):
        return str(x)
    if unit in ("x",):
        return f"{x:.2f}x"
    return f"{x:.2f} {unit}" if abs(x) < 100 else f"{x:.0f} {unit}"


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"# prelabel bench ({meta['mode']})",
        "",
        f"- date (UTC): {meta['date_utc']}",
        f"- machine: {meta['machine']}",
        f"- load average at start / end: {meta['loadavg_start']} / {meta.get('loadavg_end', '?')}",
        f"- command: `{meta['command']}`  (wall time {meta.get('wall_s', 0):.0f} s)",
        f"- commit: {meta.get('commit', '?')}",
        "",
        "| What | Measured | Target | Result | Notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in result["targets"]:
        verdict = {True: "pass", False: "**FAIL**", None: "—"}[r["pass"]]
        if r["measured"] is None:
            verdict = "not measured"
        note = r["note"].replace("|", "/")
        lines.append(f"| {r['name']} | {_fmt(r['measured'], r['unit'])} | {r['target']} | {verdict} | {note} |")
    lines += ["", "## Per-image CPU cost by stage (median ms, one thread)", ""]
    stages = result.get("stages", {})
    if stages:
        names = list(next(iter(stages.values()))["stages"])
        lines.append("| image | bytes | MP | " + " | ".join(names) + " |")
        lines.append("| --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
        for img, st in stages.items():
            cells = " | ".join(f"{st['stages'][n]['median_ms']:.3f}" for n in names)
            lines.append(f"| {img} | {st['bytes']} | {st['megapixels']:.2f} | {cells} |")
    lines += ["", "## Comparisons (raw)", ""]
    for key, comp in result["comparisons"].items():
        if not comp.get("measured"):
            lines.append(f"- **{key}**: {comp.get('reason', 'not measured')}")
            continue
        lines.append(f"- **{key}**")
        for name, v in comp.get("variants", {}).items():
            cpu = ", ".join(f"{k.removesuffix('_cpu_cores')} {v[k]:.2f}" for k in sorted(v) if k.endswith("_cpu_cores"))
            stages = ", ".join(f"{k} {x:.2f}" for k, x in sorted(v.get("service_stage_ms", {}).items()))
            lines.append(f"  - {name}: {v['throughput_rps']:.1f} req/s, p50 {v['p50_ms']:.2f} ms, "
                         f"p95 {v['p95_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms, n={v['requests']}, errors={v['errors']}"
                         + (f"; CPU cores busy: {cpu}" if cpu else "")
                         + (f"; inside the service (mean ms): {stages}" if stages else "")
                         + (f"; cancelled at drain limit: {v['cancelled_after_drain_limit']}"
                            if v.get("cancelled_after_drain_limit") else ""))
        if "per_round_ratio" in comp:
            lines.append("  - per-round ratio: " + ", ".join(f"{r:.2f}" for r in comp["per_round_ratio"] if r is not None))
    lines += ["", "Plots: " + ", ".join(result.get("plots", [])) or "none", ""]
    return "\n".join(lines)


def plots(result: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    c = result["comparisons"]
    sweep = c.get("sweep", {})
    if sweep.get("measured") and sweep.get("points"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        points = sorted(sweep["points"], key=lambda p: p["concurrency"])
        xs = [p["concurrency"] for p in points]
        ax.plot(xs, [p["suite_rps"] for p in points], "o-", label="suite (Detect)")
        ax.plot(xs, [p["bare_rps"] for p in points], "s--", label="bare tritonclient")
        b = c.get("dynamic_batching", {})
        ticks = set(xs)
        if b.get("measured"):
            ax.plot([b["concurrency"]], [b["variants"]["on"]["throughput_rps"]], "^", ms=9, color="green",
                    label="bare, dynamic batching on (batching run)")
            ax.plot([b["concurrency"]], [b["variants"]["off"]["throughput_rps"]], "x", ms=10, color="red",
                    label="bare, dynamic batching off (batching run)")
            ticks.add(b["concurrency"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks), [str(x) for x in sorted(ticks)])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("concurrency (requests in flight)")
        ax.set_ylabel("images / s")
        ax.set_title(f"{sweep['model']}: throughput vs concurrency ({result['meta']['machine_short']})")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "throughput_vs_concurrency.png", dpi=110)
        plt.close(fig)
        written.append("throughput_vs_concurrency.png")

    stages = result.get("stages", {})
    if stages:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
        parts = [("decode (reduced)", ["decode_reduced"]), ("letterbox", ["letterbox"]),
                 ("requests (parse, build, serialize)", ["detect_request_parse", "triton_request_build",
                                                          "triton_request_serialize"]),
                 ("postprocess", ["postprocess"])]
        names = list(stages)
        bottom = [0.0] * len(names)
        for label, keys in parts:
            vals = [sum(stages[n]["stages"][k]["median_ms"] for k in keys) for n in names]
            ax1.bar(names, vals, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, vals, strict=False)]
        ax1.plot(names, [stages[n]["stages"]["decode_full"]["median_ms"] for n in names], "k_", ms=18,
                 label="decode at full scale")
        ax1.set_ylabel("ms per image (one thread)")
        ax1.set_title("Serving-path CPU per image, outside the model")
        ax1.tick_params(axis="x", rotation=30)
        ax1.legend(fontsize=8)
        hop = c.get("hop_latency", {})
        if hop.get("measured"):
            labels = ["bare tritonclient", "Detect (tiny JPEG)", f"Detect ({hop['photo']})"]
            keys = ["bare_triton", "suite_tiny", "suite_photo"]
            ax2.bar(labels, [hop["variants"][k]["p50_ms"] for k in keys], color=["tab:gray", "tab:blue", "tab:orange"])
            svc = hop["variants"]["suite_tiny"].get("service_stage_ms", {})
            ax2.set_title("p50 at concurrency 1, bench_identity"
                          + ("\nDetect (tiny JPEG) inside the service, mean ms:\n"
                             + ", ".join(f"{k} {v:.2f}" for k, v in sorted(svc.items())) if svc else ""), fontsize=9)
            ax2.set_ylabel("ms")
            ax2.tick_params(axis="x", rotation=15)
        fig.tight_layout()
        fig.savefig(out / "latency_by_stage.png", dpi=110)
        plt.close(fig)
        written.append("latency_by_stage.png")
    return written


def write(result: dict, out: Path, stem: str = "bench") -> None:
    out.mkdir(parents=True, exist_ok=True)
    if stem == "bench":
        result["plots"] = plots(result, out)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    (out / f"{stem}.md").write_text(markdown(result))
