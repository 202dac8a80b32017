"""Quality of the draft labels against what humans corrected: `prelabel evaluate`
(reports) and `prelabel calibrate` (review bands that reach a target precision).

drafts.py reads `annotate` output folders, truth.py the corrected labels (COCO, CVAT
COCO 1.0 / COCO Keypoints 1.0, Label Studio JSON export), match.py pairs images and
labels, bounds.py holds the binomial confidence bounds; evaluate.py and calibrate.py
build on them.
"""
