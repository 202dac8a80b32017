"""Run with the `sam` tool venv: the small random-initialised SAM of sam_reference.py (seed
0) exported as a SAM-interface pair -- encoder.onnx, decoder.onnx (Meta's SamOnnxModel,
return_single_mask=False) -- and its weights, sam.pt, for the reference (sam_predict.py sam)
to load, into the folder given. The IoU head's output bias is raised by 0.5 so the
predicted IoUs (random: about 0 +- 0.1) lie inside (0, 1), where the service reports them
as they are (it clips to [0, 1]). Prints one JSON line: the files' sizes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from sam_reference import export, export_encoder, tiny_sam


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    sam = tiny_sam()
    with torch.no_grad():
        sam.mask_decoder.iou_prediction_head.layers[-1].bias += 0.5
    export_encoder(sam, out / "encoder.onnx")
    export(sam, out / "decoder.onnx")
    torch.save(sam.state_dict(), out / "sam.pt")
    print(json.dumps({p.name: p.stat().st_size for p in sorted(out.iterdir())}))


if __name__ == "__main__":
    main()
