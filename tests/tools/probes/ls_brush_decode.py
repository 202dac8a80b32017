"""Decode brush regions with Label Studio's own RLE decoder; print each mask's area.

    python ls_brush_decode.py REGIONS_JSON [MASKS_NPZ]   (run with the label-studio tool venv)

With MASKS_NPZ, the masks themselves (bool, height x width) are saved there, in order.
"""
import json
import sys

import numpy as np
from label_studio_sdk.converter.brush import decode_rle

with open(sys.argv[1]) as f:
    regions = json.load(f)
areas = []
masks = []
for region in regions:
    h, w = region["original_height"], region["original_width"]
    image = np.reshape(decode_rle(region["value"]["rle"]), [h, w, 4])
    assert (image[:, :, 0] == image[:, :, 3]).all()  # all four channels painted alike
    masks.append(image[:, :, 3] > 0)
    areas.append(int(masks[-1].sum()))
if len(sys.argv) > 2:
    np.savez(sys.argv[2], *masks)
print(json.dumps({"areas": areas}))
