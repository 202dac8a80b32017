"""The model contract between the services and the Triton models, declared once and used
by both sides.

- Tensors: every tensor a model exchanges is a `TensorSpec` here (IMAGE, PROMPT_BOXES,
  BOXES, ...). The model code and the services read and write tensors by these specs'
  names, never by position or by a name of their own.
- Prompt kinds: the ways a caller points at an object (`PromptKind`). Boxes, points
  with a sign and a previous low-resolution mask are served (points and masks by the
  click decoder); text is declared for the models and tasks that will read it. A kind's tensors have the prompt axis P first;
  PROMPT_COUNT says how many rows are valid, whatever the kinds (0 = automatic mode).
- Heads: each model in model_repository/ implements one head, named by its config's
  `head` parameter. A head fixes the tensor names, dtypes and shapes (symbols such as N
  bind to one value across the tensors of a config) and lists the prompt kinds it takes.
  The services (at start-up, from Triton's own view of the config), the model code (at
  load) and the unit tests (every config.pbtxt and configs/*.pbtxt) check configs with
  `check_config`; so a model missing an output fails when it loads, with a message that
  names it, instead of at request time.

A model's parameters (typed, per implementation) are declared in
services.modelkit.parameters. Standard library only: imported by the Triton models and
by the services.
"""
from __future__ import annotations

from dataclasses import dataclass

Dim = int | str  # a fixed size, or a symbol bound per config


class ContractError(ValueError):
    pass


#: Triton config dtype -> numpy dtype name (TYPE_STRING travels as BYTES: numpy objects).
NUMPY_DTYPES = {
    "TYPE_BOOL": "bool", "TYPE_UINT8": "uint8", "TYPE_INT8": "int8", "TYPE_INT16": "int16",
    "TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_FP16": "float16", "TYPE_FP32": "float32",
    "TYPE_FP64": "float64", "TYPE_STRING": "object",
}

#: What a tensor's last axis holds when it is geometry the services map between source
#: and model-input pixels.
BOX = "box"  # x_min, y_min, x_max, y_max
POINTS = "points"  # (x, y) pairs


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton's TYPE_* name
    dims: tuple[Dim, ...]  # without the batch axis
    meaning: str = ""
    #: BOX or POINTS when the values are model-input pixels ("" otherwise).
    geometry: str = ""
    #: Prompt tensors: the value of the rows (and parts of rows) no prompt fills.
    pad: float | int | bytes = 0

    @property
    def numpy_dtype(self) -> str:
        return NUMPY_DTYPES[self.dtype]


# -- inputs ---------------------------------------------------------------------------
IMAGE = TensorSpec("IMAGE", "TYPE_UINT8", ("S", "S", 3), "letterboxed RGB, model-input pixels")
PROMPT_COUNT = TensorSpec("PROMPT_COUNT", "TYPE_INT32", (1,), "valid prompt rows; 0 = automatic mode")
PROMPT_BOXES = TensorSpec("PROMPT_BOXES", "TYPE_FP32", ("P", 4), "x_min, y_min, x_max, y_max, model-input pixels",
                          geometry=BOX)
PROMPT_LABELS = TensorSpec("PROMPT_LABELS", "TYPE_INT32", ("P",), "COCO id per prompt, 0 = unknown")
PROMPT_POINTS = TensorSpec("PROMPT_POINTS", "TYPE_FP32", ("P", "Q", 2),
                           "up to Q clicks (x, y) per prompt, model-input pixels", geometry=POINTS)
PROMPT_POINT_SIGNS = TensorSpec("PROMPT_POINT_SIGNS", "TYPE_INT32", ("P", "Q"),
                                "per click: 1 = on the object, 0 = background, 2 / 3 = a box's top-left / "
                                "bottom-right corner (SAM's encoding of a box), -1 = no click", pad=-1)
PROMPT_MASKS = TensorSpec("PROMPT_MASKS", "TYPE_FP32", ("P", "L", "L"),
                          "the previous answer's low-resolution mask logits, on the model's own grid")
PROMPT_MASK_GIVEN = TensorSpec("PROMPT_MASK_GIVEN", "TYPE_INT32", ("P",),
                               "1 where the PROMPT_MASKS row is a previous answer, 0 where there is none")
PROMPT_TEXT = TensorSpec("PROMPT_TEXT", "TYPE_STRING", ("P",), "UTF-8 phrase naming what to find", pad=b"")

IMAGE_VALID = TensorSpec("IMAGE_VALID", "TYPE_INT32", (2,),
                         "(height, width) of the picture in IMAGE from its top-left corner; zeros pad the rest")
IMAGE_EMBEDDINGS = TensorSpec("IMAGE_EMBEDDINGS", "TYPE_FP32", (256, 64, 64),
                              "an image encoder's output for one image (SAM's interface)")
HIGH_RES_FEATS_0 = TensorSpec("HIGH_RES_FEATS_0", "TYPE_FP32", (32, 256, 256),
                              "a SAM 2 image encoder's finest features for one image (high_res_feats_0)")
HIGH_RES_FEATS_1 = TensorSpec("HIGH_RES_FEATS_1", "TYPE_FP32", (64, 128, 128),
                              "a SAM 2 image encoder's middle features for one image (high_res_feats_1)")
#: Inputs that carry the image or what a model made of it: neither prompts nor their count.
IMAGE_INPUTS = (IMAGE, IMAGE_VALID, IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0, HIGH_RES_FEATS_1)

# -- outputs --------------------------------------------------------------------------
BOXES = TensorSpec("BOXES", "TYPE_FP32", ("N", 4), "x_min, y_min, x_max, y_max, model-input pixels", geometry=BOX)
SCORES = TensorSpec("SCORES", "TYPE_FP32", ("N",), "score in [0, 1], rows sorted by score")
LABELS = TensorSpec("LABELS", "TYPE_INT32", ("N",), "category id of the config's label_map")
LANDMARKS = TensorSpec("LANDMARKS", "TYPE_FP32", ("N", 5, 2), "5 facial landmarks (x, y)", geometry=POINTS)
KEYPOINTS = TensorSpec("KEYPOINTS", "TYPE_FP32", ("N", "K", 2), "(x, y) model-input pixels", geometry=POINTS)
KEYPOINT_SCORES = TensorSpec("KEYPOINT_SCORES", "TYPE_FP32", ("N", "K"), "per-keypoint score in [0, 1]")
MASKS = TensorSpec("MASKS", "TYPE_FP32", ("N", "M", "M"), "mask probabilities over each row's box")
COUNT = TensorSpec("COUNT", "TYPE_INT32", (1,), "valid rows")
LOW_RES_MASKS = TensorSpec("LOW_RES_MASKS", "TYPE_FP32", ("P", "C", "L", "L"),
                           "per prompt, the decoder's C candidate masks as logits on its own L x L grid")
PREDICTED_IOUS = TensorSpec("PREDICTED_IOUS", "TYPE_FP32", ("P", "C"), "per candidate, the decoder's predicted IoU")
PROVENANCE = TensorSpec("PROVENANCE", "TYPE_STRING", (1,), "JSON: architecture, weights kind, source, sha256, license")


@dataclass(frozen=True)
class PromptKind:
    """One way a caller points at an object. `tensors[0]` is the kind itself (a head that
    takes the kind has it); the others are companions a head may take too (the category
    of a box)."""

    name: str
    tensors: tuple[TensorSpec, ...]
    #: Whether a service reads this kind from requests yet.
    served: bool
    description: str = ""

    @property
    def tensor(self) -> TensorSpec:
        return self.tensors[0]


BOX_PROMPTS = PromptKind("boxes", (PROMPT_BOXES, PROMPT_LABELS), served=True,
                         description="a box around the object, with its category when the caller knows it")
POINT_PROMPTS = PromptKind("points", (PROMPT_POINTS, PROMPT_POINT_SIGNS), served=True,
                           description="clicks, each positive (on the object) or negative (background)")
MASK_PROMPTS = PromptKind("masks", (PROMPT_MASKS, PROMPT_MASK_GIVEN), served=True,
                          description="the previous answer's low-resolution mask, refined by the next clicks")
TEXT_PROMPTS = PromptKind("text", (PROMPT_TEXT,), served=False,
                          description="a phrase naming the objects to find")
PROMPT_KINDS: dict[str, PromptKind] = {k.name: k for k in (BOX_PROMPTS, POINT_PROMPTS, MASK_PROMPTS, TEXT_PROMPTS)}


def kind_of(tensor: TensorSpec) -> PromptKind:
    """The prompt kind a prompt tensor belongs to."""
    return next(k for k in PROMPT_KINDS.values() if tensor in k.tensors)


@dataclass(frozen=True)
class Head:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: Prompt kinds the head takes: their tensors (those it lists in `inputs`) and PROMPT_COUNT.
    prompts: tuple[PromptKind, ...] = ()
    #: Symbol pairs (small, large) with small <= large (e.g. prompts fit the output rows).
    at_most: tuple[tuple[str, str], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        # The heads below are declared right, or this module does not import.
        prompt_tensors = {t for kind in self.prompts for t in kind.tensors}
        for kind in self.prompts:
            if kind.tensor not in self.inputs:
                raise ContractError(f"{self.name}: takes {kind.name} prompts without {kind.tensor.name}")
        for tensor in self.inputs:
            if tensor not in (*IMAGE_INPUTS, PROMPT_COUNT) and tensor not in prompt_tensors:
                raise ContractError(f"{self.name}: input {tensor.name} belongs to no prompt kind it takes")
        if (PROMPT_COUNT in self.inputs) != bool(self.prompts):
            raise ContractError(f"{self.name}: PROMPT_COUNT is an input exactly when the head takes prompts")

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def prompt_inputs(self) -> tuple[TensorSpec, ...]:
        """The inputs that carry prompts, one row per prompt (PROMPT_COUNT excluded)."""
        return tuple(t for t in self.inputs if t not in (*IMAGE_INPUTS, PROMPT_COUNT))

    def row_outputs(self) -> tuple[TensorSpec, ...]:
        """The outputs with one row per instance (N first); in prompted mode row k answers prompt k."""
        return tuple(t for t in self.outputs if t.dims[:1] == ("N",))


DETECTOR_HEAD = Head("detector", (IMAGE,), (BOXES, SCORES, LABELS, COUNT, PROVENANCE),
                     description="boxes with categories")
FACE_DETECTOR_HEAD = Head("face_detector", (IMAGE,), (BOXES, SCORES, LANDMARKS, COUNT, PROVENANCE),
                          description="faces with 5 landmarks")
KEYPOINTS_HEAD = Head("keypoints", (IMAGE, PROMPT_BOXES, PROMPT_COUNT),
                      (BOXES, SCORES, LABELS, KEYPOINTS, KEYPOINT_SCORES, COUNT, PROVENANCE),
                      prompts=(BOX_PROMPTS,), at_most=(("P", "N"),),
                      description="persons with K keypoints; automatic or one row per prompt box")
PROMPTABLE_MASKS_HEAD = Head("promptable_masks", (IMAGE, PROMPT_BOXES, PROMPT_LABELS, PROMPT_COUNT),
                             (BOXES, SCORES, LABELS, MASKS, COUNT, PROVENANCE),
                             prompts=(BOX_PROMPTS,), at_most=(("P", "N"),),
                             description="instance masks; automatic or one row per prompt box")

# A click-to-segment model in two parts (SAM's interface; services.modelkit.sam_model):
# the encoder runs once per image, the decoder once per click on the kept embedding.
IMAGE_ENCODER_HEAD = Head("image_encoder", (IMAGE, IMAGE_VALID), (IMAGE_EMBEDDINGS, PROVENANCE),
                          description="an image's embedding: the picture resized so its long side is S, "
                                      "at IMAGE's top-left")
MASK_DECODER_HEAD = Head("mask_decoder",
                         (IMAGE_EMBEDDINGS, PROMPT_POINTS, PROMPT_POINT_SIGNS, PROMPT_MASKS, PROMPT_MASK_GIVEN,
                          PROMPT_COUNT),
                         (LOW_RES_MASKS, PREDICTED_IOUS, PROVENANCE), prompts=(POINT_PROMPTS, MASK_PROMPTS),
                         description="candidate masks for clicks, a box and a previous mask, on an "
                                     "image_encoder's embedding; points in the encoder's IMAGE pixels")

# The same for SAM 2 (services.modelkit.sam_model): the encoder's three feature maps are
# kept per image, the decoder reads all three.
SAM2_IMAGE_ENCODER_HEAD = Head("sam2_image_encoder", (IMAGE,),
                               (IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0, HIGH_RES_FEATS_1, PROVENANCE),
                               description="an image's SAM 2 features: the picture resized to S x S")
SAM2_MASK_DECODER_HEAD = Head("sam2_mask_decoder",
                              (IMAGE_EMBEDDINGS, HIGH_RES_FEATS_0, HIGH_RES_FEATS_1, PROMPT_POINTS,
                               PROMPT_POINT_SIGNS, PROMPT_MASKS, PROMPT_MASK_GIVEN, PROMPT_COUNT),
                              (LOW_RES_MASKS, PREDICTED_IOUS, PROVENANCE), prompts=(POINT_PROMPTS, MASK_PROMPTS),
                              description="candidate masks for clicks, a box and a previous mask, on a "
                                          "sam2_image_encoder's features; points in the encoder's IMAGE pixels")

HEADS: dict[str, Head] = {
    h.name: h for h in (DETECTOR_HEAD, FACE_DETECTOR_HEAD, KEYPOINTS_HEAD, PROMPTABLE_MASKS_HEAD,
                        IMAGE_ENCODER_HEAD, MASK_DECODER_HEAD, SAM2_IMAGE_ENCODER_HEAD, SAM2_MASK_DECODER_HEAD)
}


def _dims(tensor: dict) -> list[int]:
    return [int(d) for d in tensor.get("dims", [])]


def string_parameters(config: dict) -> dict[str, str]:
    """A config's parameters as Triton gives them (JSON form): name -> string value."""
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def check_config(config: dict) -> Head:
    """Check a model config (Triton's JSON form, as `get_model_config(as_json=True)`
    returns it and as the Python backend receives it) against its head. Returns the head;
    raises ContractError listing every problem."""
    model = config.get("name", "?")
    head_name = string_parameters(config).get("head", "")
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
            for want, got in zip(spec.dims, dims, strict=True):
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
