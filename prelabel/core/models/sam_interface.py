"""SAM's ONNX interface, checked on a user's encoder + decoder pair at `prelabel models add
--family sam` (and again when the models load): what each file's edges must declare.

- encoder: input `image` float32 [1, 3, 1024, 1024] (the normalised, zero-padded picture),
  output `image_embeddings` float32 [1, 256, 64, 64];
- decoder: Meta's SamOnnxModel export with return_single_mask=False: inputs
  image_embeddings [1, 256, 64, 64], point_coords [1, K, 2], point_labels [1, K] (K
  dynamic: a click prompt has as many points as it has), mask_input [1, 1, 256, 256],
  has_mask_input [1], orig_im_size [2], all float32; outputs masks, iou_predictions [1, 4]
  and low_res_masks [1, 4, 256, 256] (4: the single-mask answer and the 3 multimask
  candidates; an export with return_single_mask=True has 1 and is refused).

SAM 2's interface (`--family sam2`, prelabel/core/models/convert/sam2_to_onnx.py, the layout
of community SAM 2 exports):
- encoder: input `image` float32 [1, 3, 1024, 1024], outputs `image_embed` [1, 256, 64, 64],
  `high_res_feats_0` [1, 32, 256, 256], `high_res_feats_1` [1, 64, 128, 128];
- decoder: inputs those three, point_coords [1, K, 2], point_labels [1, K], mask_input
  [1, 1, 256, 256], has_mask_input [1]; outputs low_res_masks [1, 4, 256, 256] and
  iou_predictions [1, 4] (all four masks: the server makes SAM 2's choice).

A dimension the file leaves symbolic passes where a number is expected (onnxruntime checks
the values at run time); a number that differs, a missing tensor or another element type
is refused with a message naming the file's tensor and what SAM's interface needs.
Standard library only (prelabel.core.models.onnx_graph reads the files).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prelabel.core.models.onnx_graph import Dim, OnnxGraph, TensorInfo, read_onnx_graph

EMBEDDING = (1, 256, 64, 64)
LOW_RES = 256
CANDIDATES = 4  # the decoder's masks with return_single_mask=False
ANY = "?"  # a dimension SAM's interface leaves free

ENCODER_INPUTS: dict[str, tuple[Dim, ...]] = {"image": (1, 3, 1024, 1024)}
ENCODER_OUTPUTS: dict[str, tuple[Dim, ...]] = {"image_embeddings": EMBEDDING}
DECODER_INPUTS: dict[str, tuple[Dim, ...]] = {
    "image_embeddings": EMBEDDING,
    "point_coords": (1, ANY, 2),
    "point_labels": (1, ANY),
    "mask_input": (1, 1, LOW_RES, LOW_RES),
    "has_mask_input": (1,),
    "orig_im_size": (2,),
}
DECODER_OUTPUTS: dict[str, tuple[Dim, ...]] = {
    "masks": (1, CANDIDATES, ANY, ANY),
    "iou_predictions": (1, CANDIDATES),
    "low_res_masks": (1, CANDIDATES, LOW_RES, LOW_RES),
}


SAM2_ENCODER_OUTPUTS: dict[str, tuple[Dim, ...]] = {
    "image_embed": EMBEDDING,
    "high_res_feats_0": (1, 32, 256, 256),
    "high_res_feats_1": (1, 64, 128, 128),
}
SAM2_DECODER_INPUTS: dict[str, tuple[Dim, ...]] = {
    **SAM2_ENCODER_OUTPUTS,
    "point_coords": (1, ANY, 2),
    "point_labels": (1, ANY),
    "mask_input": (1, 1, LOW_RES, LOW_RES),
    "has_mask_input": (1,),
}
SAM2_DECODER_OUTPUTS: dict[str, tuple[Dim, ...]] = {
    "low_res_masks": (1, CANDIDATES, LOW_RES, LOW_RES),
    "iou_predictions": (1, CANDIDATES),
}


@dataclass(frozen=True)
class SamFamily:
    """One family's interface: what its encoder and decoder files must declare."""

    name: str  # `models add --family`
    title: str  # in messages: "SAM's interface"
    encoder_inputs: Mapping[str, tuple[Dim, ...]]
    encoder_outputs: Mapping[str, tuple[Dim, ...]]
    decoder_inputs: Mapping[str, tuple[Dim, ...]]
    decoder_outputs: Mapping[str, tuple[Dim, ...]]


SAM = SamFamily("sam", "SAM", ENCODER_INPUTS, ENCODER_OUTPUTS, DECODER_INPUTS, DECODER_OUTPUTS)
SAM2 = SamFamily("sam2", "SAM 2", ENCODER_INPUTS, SAM2_ENCODER_OUTPUTS, SAM2_DECODER_INPUTS, SAM2_DECODER_OUTPUTS)
FAMILIES = {f.name: f for f in (SAM, SAM2)}


class SamInterfaceError(ValueError):
    """A file does not have SAM's interface (the message says which tensor and why)."""


@dataclass(frozen=True)
class SamPair:
    encoder: Path
    decoder: Path


def _check_tensor(part: str, kind: str, want: tuple[Dim, ...], got: TensorInfo, title: str) -> list[str]:
    problems = []
    if got.elem_type != "float32":
        problems.append(f"{part} {kind} {got.name} is {got.elem_type}, {title}'s interface has float32")
    if got.shape is None:
        return problems
    if len(got.shape) != len(want) or any(
            isinstance(w, int) and isinstance(g, int) and g != w for w, g in zip(want, got.shape, strict=False)):
        shown = [d if isinstance(d, int) else "?" for d in got.shape]
        expected = [d if isinstance(d, int) else "any" for d in want]
        why = ""
        if part == "decoder" and got.name == "iou_predictions" and len(got.shape) == 2 and got.shape[1] == 1:
            why = " (exported with return_single_mask=True: export with return_single_mask=False)"
        problems.append(f"{part} {kind} {got.name} has shape {shown}, {title}'s interface has {expected}{why}")
    return problems


def check_graph(part: str, graph: OnnxGraph, inputs: Mapping[str, tuple[Dim, ...]],
                outputs: Mapping[str, tuple[Dim, ...]], title: str = SAM.title) -> None:
    """SamInterfaceError listing every difference between `graph`'s edges and the
    interface of `part` ("encoder" or "decoder"); `title` names the family in messages."""
    problems: list[str] = []
    for kind, wanted, declared in (("input", inputs, graph.inputs), ("output", outputs, graph.outputs)):
        by_name = {t.name: t for t in declared}
        extra = sorted(set(by_name) - set(wanted))
        if kind == "input" and extra:
            problems.append(f"{part} has inputs {extra} {title}'s interface does not feed")
        for name, want in wanted.items():
            if name not in by_name:
                problems.append(f"{part} has no {kind} {name!r} (its {kind}s: {sorted(by_name)}; {title}'s "
                                f"interface needs {sorted(wanted)})")
            else:
                problems.extend(_check_tensor(part, kind, want, by_name[name], title))
    if problems:
        raise SamInterfaceError("; ".join(problems))


def check_encoder(graph: OnnxGraph, family: SamFamily = SAM) -> None:
    check_graph("encoder", graph, family.encoder_inputs, family.encoder_outputs, family.title)


def check_decoder(graph: OnnxGraph, family: SamFamily = SAM) -> None:
    check_graph("decoder", graph, family.decoder_inputs, family.decoder_outputs, family.title)


def read_sam_pair(encoder: str | Path, decoder: str | Path, family: SamFamily = SAM) -> SamPair:
    """The pair, each file checked against `family`'s interface (NotOnnxError for a file
    that is not ONNX, SamInterfaceError for one of another interface; both ValueError), the
    error naming the file."""
    for path, check in ((encoder, check_encoder), (decoder, check_decoder)):
        try:
            check(read_onnx_graph(path), family)
        except ValueError as exc:
            raise type(exc)(f"{path}: {exc}") from None
    return SamPair(Path(encoder), Path(decoder))
