"""The tensor contract between the services and the Triton models, declared once.

Each model in model_repository/ implements one *head*, named by its config's `head`
parameter. A head fixes the tensor names, dtypes and shapes (symbols such as N bind to
one value across the tensors of a config). The services (at start-up, from Triton's own
view of the config), the model code (at load) and the unit tests (every config.pbtxt and
configs/*.pbtxt) check configs with `check_config`; so a model missing an output fails
when it loads, with a message that names it, instead of at request time.

Standard library only: imported by the Triton models and by the services.
"""
from __future__ import annotations

from dataclasses import dataclass

Dim = int | str  # a fixed size, or a symbol bound per config


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton's TYPE_* name
    dims: tuple[Dim, ...]  # without the batch axis
    meaning: str = ""


@dataclass(frozen=True)
class Head:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: Symbol pairs (small, large) with small <= large (e.g. prompts fit the output rows).
    at_most: tuple[tuple[str, str], ...] = ()
    description: str = ""

    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


IMAGE = TensorSpec("IMAGE", "TYPE_UINT8", ("S", "S", 3), "letterboxed RGB, model-input pixels")
PROMPT_BOXES = TensorSpec("PROMPT_BOXES", "TYPE_FP32", ("P", 4), "x_min, y_min, x_max, y_max, model-input pixels")
PROMPT_LABELS = TensorSpec("PROMPT_LABELS", "TYPE_INT32", ("P",), "COCO id per prompt, 0 = unknown")
PROMPT_COUNT = TensorSpec("PROMPT_COUNT", "TYPE_INT32", (1,), "valid prompt rows; 0 = automatic mode")
BOXES = TensorSpec("BOXES", "TYPE_FP32", ("N", 4), "x_min, y_min, x_max, y_max, model-input pixels")
SCORES = TensorSpec("SCORES", "TYPE_FP32", ("N",), "score in [0, 1], rows sorted by score")
LABELS = TensorSpec("LABELS", "TYPE_INT32", ("N",), "category id of the config's label_map")
COUNT = TensorSpec("COUNT", "TYPE_INT32", (1,), "valid rows")
PROVENANCE = TensorSpec("PROVENANCE", "TYPE_STRING", (1,), "JSON: architecture, weights kind, source, sha256, license")

HEADS: dict[str, Head] = {
    h.name: h
    for h in [
        Head("detector", (IMAGE,), (BOXES, SCORES, LABELS, COUNT, PROVENANCE),
             description="boxes with categories"),
        Head("face_detector", (IMAGE,),
             (BOXES, SCORES, TensorSpec("LANDMARKS", "TYPE_FP32", ("N", 5, 2), "5 facial landmarks (x, y)"),
              COUNT, PROVENANCE),
             description="faces with 5 landmarks"),
        Head("keypoints", (IMAGE, PROMPT_BOXES, PROMPT_COUNT),
             (BOXES, SCORES, LABELS,
              TensorSpec("KEYPOINTS", "TYPE_FP32", ("N", "K", 2), "(x, y) model-input pixels"),
              TensorSpec("KEYPOINT_SCORES", "TYPE_FP32", ("N", "K"), "per-keypoint score in [0, 1]"),
              COUNT, PROVENANCE),
             at_most=(("P", "N"),),
             description="persons with K keypoints; automatic or one row per prompt box"),
        Head("promptable_masks", (IMAGE, PROMPT_BOXES, PROMPT_LABELS, PROMPT_COUNT),
             (BOXES, SCORES, LABELS,
              TensorSpec("MASKS", "TYPE_FP32", ("N", "M", "M"), "mask probabilities over each row's box"),
              COUNT, PROVENANCE),
             at_most=(("P", "N"),),
             description="instance masks; automatic or one row per prompt box"),
    ]
}


class ContractError(ValueError):
    pass


def _dims(tensor: dict) -> list[int]:
    return [int(d) for d in tensor.get("dims", [])]


def check_config(config: dict) -> Head:
    """Check a model config (Triton's JSON form, as `get_model_config(as_json=True)`
    returns it and as the Python backend receives it) against its head. Returns the head;
    raises ContractError listing every problem."""
    model = config.get("name", "?")
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    head_name = params.get("head", "")
    if head_name not in HEADS:
        raise ContractError(f"{model}: parameter 'head' is {head_name!r}; expected one of {sorted(HEADS)}")
    head = HEADS[head_name]
    problems: list[str] = []
    bound: dict[str, int] = {}
    for kind, specs, tensors in (("input", head.inputs, config.get("input", [])),
                                 ("output", head.outputs, config.get("output", []))):
        by_name = {t["name"]: t for t in tensors}
        extra = sorted(set(by_name) - {s.name for s in specs})
        if extra:
            problems.append(f"unexpected {kind}s {extra}")
        for spec in specs:
            tensor = by_name.get(spec.name)
            if tensor is None:
                problems.append(f"missing {kind} {spec.name} ({spec.dtype} {list(spec.dims)}: {spec.meaning})")
                continue
            dtype = tensor.get("data_type", "")
            if dtype != spec.dtype:
                problems.append(f"{kind} {spec.name} is {dtype}, the {head.name} head needs {spec.dtype}")
            dims = _dims(tensor)
            if len(dims) != len(spec.dims):
                problems.append(f"{kind} {spec.name} has dims {dims}, the {head.name} head needs {list(spec.dims)}")
                continue
            for want, got in zip(spec.dims, dims, strict=False):
                if isinstance(want, int):
                    if got != want:
                        problems.append(f"{kind} {spec.name} dims {dims}: expected {list(spec.dims)}")
                elif bound.setdefault(want, got) != got:
                    problems.append(f"{kind} {spec.name}: {want} = {got} here but {bound[want]} elsewhere")
                elif got <= 0:
                    problems.append(f"{kind} {spec.name}: {want} must be positive (variable dims are not batchable)")
    for small, large in head.at_most:
        if small in bound and large in bound and bound[small] > bound[large]:
            problems.append(f"{small} = {bound[small]} must not exceed {large} = {bound[large]}")
    if int(config.get("max_batch_size", 0)) < 1:
        problems.append("max_batch_size must be >= 1 (the services send a batch axis)")
    if problems:
        raise ContractError(f"{model} ({head.name} head): " + "; ".join(problems))
    return head
