"""Run with the `sam2` tool venv: the small random-initialised SAM 2.1 of sam2_reference.py
(seed 0), and the same with mask 0 sharpened (sam2_reference.sharpened), each exported by
prelabel/core/models/convert/sam2_to_onnx.py -- encoder.onnx, decoder.onnx -- with its
weights, sam2.pt, for the reference (sam_predict.py sam2) to load, into OUT/base and OUT/sharp.
Prints one JSON line: the files' sizes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from sam2_reference import sharpened

from prelabel.core.models.convert.sam2_to_onnx import export_decoder, export_encoder, tiny_sam2


def main() -> None:
    out = Path(sys.argv[1])
    sizes = {}
    for name, edit in (("base", lambda m: m), ("sharp", sharpened)):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = edit(tiny_sam2().eval())
        with torch.no_grad():
            export_encoder(model, folder / "encoder.onnx")
            export_decoder(model, folder / "decoder.onnx")
        torch.save(model.state_dict(), folder / "sam2.pt")
        sizes |= {f"{name}/{p.name}": p.stat().st_size for p in sorted(folder.iterdir())}
    print(json.dumps(sizes))


if __name__ == "__main__":
    main()
