"""Ultralytics 8.4 loads every YOLO dataset annotate writes, as written: its own dataset
checker (`check_det_dataset`) and loader (`YOLODataset`), inputs in a folder named
`images` (with a sub-folder named `images` too)."""
from __future__ import annotations

from collections import Counter

import pytest

from prelabel.formats.common import DEFAULT_OUTPUTS_REVIEW, output_labels
from tests.tools import samples as samples_mod

pytestmark = [pytest.mark.tools, pytest.mark.timeout(1200)]

KINDS = ["detect", "segment", "pose", "faces"]


def load(run_probe, out):
    return run_probe("ultralytics", "ultralytics_load.py", *[out / "yolo" / k / "data.yaml" for k in KINDS])


def expected_counts(samples):
    """Labels per dataset: the samples' labels but the rejected drafts (one person box), which
    YOLO leaves out by default."""
    kinds = {"detect": "detect", "segment": "segment", "keypoints": "pose", "faces": "faces"}
    counts = Counter(kinds[label.task.name] for s in samples
                     for label in output_labels(s.response, DEFAULT_OUTPUTS_REVIEW))
    assert counts["detect"] == 2 * sum(1 for s in samples if s.response.detections) - 1
    return counts


def test_ultralytics_loads_every_dataset_when_inputs_sit_in_folders_named_images(sample_run, run_probe):
    samples, out, root = sample_run
    assert root.endswith("/images")
    found = load(run_probe, out)
    counts = expected_counts(samples)
    for kind in KINDS:
        got = found[kind]
        assert got["images"] == len(samples), kind
        assert got["instances"] == counts[kind], kind  # every label paired with its image
        assert got["with_labels"] == sum(1 for s in samples if s.response.detections), kind
        for image, label in zip(got["im_files"], got["label_files"], strict=False):
            assert f"/yolo/{kind}/images/" in image and f"/yolo/{kind}/labels/" in label
    assert found["detect"]["nc"] == 81 and found["segment"]["segments"] == counts["segment"]
    assert found["pose"]["kpt_shape"] == [17, 3] and {tuple(k) for k in found["pose"]["keypoints"]} == {(1, 17, 3)}
    assert found["faces"]["kpt_shape"] == [5, 3]
    assert "keypoints" in found["pose"]["first_item_keys"] and "masks" in found["segment"]["first_item_keys"]


def test_ultralytics_loads_datasets_when_names_are_absolute_paths_and_split(tmp_path, run_probe):
    samples = samples_mod.make_samples(tmp_path / "in")
    out = tmp_path / "out"
    samples_mod.write(samples, out, formats=["yolo"], image_root="", val_fraction=0.5)
    found = load(run_probe, out)
    for kind in KINDS:
        splits = found[kind]["splits"]
        # ids are tmp paths, so which images fall in val varies; an empty side points at the other
        parts = ["train"] if found[kind]["val_is_train"] else ["train", "val"]
        assert sum(splits[p]["images"] for p in parts) == len(samples), kind
        assert sum(splits[p]["instances"] for p in parts) == expected_counts(samples)[kind], kind


def test_ultralytics_trains_and_plots_its_results_when_dataset_is_annotates(sample_run, run_probe, tmp_path):
    # One epoch of a tiny model: the run must reach its result plots (polars reads results.csv).
    _, out, _ = sample_run
    found = run_probe("ultralytics", "ultralytics_train.py", out / "yolo" / "detect" / "data.yaml", tmp_path / "runs",
                      timeout=600)
    assert {"results.csv", "results.png", "confusion_matrix.png"} <= set(found["files"])
    assert found["results_csv_rows"] == 2  # header + the one epoch
