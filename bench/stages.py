"""Per-image CPU cost of the serving path outside the model, stage by stage, measured
by calling the suite's own functions directly (one thread, no server):

decode (full scale and at reduced scale, as the service does), the copy
`ImageOps.exif_transpose` makes of an upright image, letterbox, the tritonclient
input (`InferInput.set_data_from_numpy`), the Triton request proto and its
serialisation, the Detect request parse, and the Detect postprocess.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from PIL import ImageOps

from bench import images
from prelabel.v1 import common_pb2, detection_pb2
from services.common.imaging import decode_image
from services.common.letterbox import letterbox_for, letterbox_image
from services.common.settings import ServiceSettings

SETTINGS = ServiceSettings()


def time_call(fn: Callable[[], object], *, budget_s: float, min_reps: int = 3, max_reps: int = 200) -> dict:
    fn()  # warm (imports, caches)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_reps and (len(samples) < min_reps or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3, "reps": len(samples)}


def _decode(data: bytes, target: tuple[int, int] | None):
    return decode_image(data, max_bytes=SETTINGS.max_image_bytes, max_pixels=SETTINGS.max_image_pixels,
                        target_size=target)


def _letterbox(decoded, size: tuple[int, int]) -> np.ndarray:
    # What services.common.preprocess.prepare_image does after decoding.
    width, height = size
    lb = letterbox_for(decoded.width, decoded.height, width, height)
    tensor = np.zeros((1, height, width, 3), dtype=np.uint8)
    letterbox_image(decoded.image, lb, out=tensor[0])
    return tensor


def _triton_request(model: str, tensor: np.ndarray, outputs: list[str]):
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc._utils import _get_inference_request

    inp = InferInput("IMAGE", list(tensor.shape), "UINT8")
    inp.set_data_from_numpy(tensor)
    return _get_inference_request(
        model_name=model, inputs=[inp], model_version="", request_id="",
        outputs=[InferRequestedOutput(o) for o in outputs], sequence_id=0, sequence_start=False,
        sequence_end=False, priority=1, timeout=None, parameters=None,
    )


def _fixed_outputs(n_slots: int = 100, n_boxes: int = 10) -> dict[str, np.ndarray]:
    """The outputs bench_identity returns (10 boxes), as the pipeline sees them."""
    boxes = np.zeros((1, n_slots, 4), np.float32)
    scores = np.zeros((1, n_slots), np.float32)
    labels = np.zeros((1, n_slots), np.int32)
    for i in range(n_boxes):
        boxes[0, i] = (10 + 25 * i, 20, 40 + 25 * i, 80 + 10 * i)
        scores[0, i] = 0.90 - 0.05 * i
        labels[0, i] = i + 1
    return {"BOXES": boxes, "SCORES": scores, "LABELS": labels, "COUNT": np.array([[n_boxes]], np.int32)}


def _postprocess_context(out: dict[str, np.ndarray]):
    """What a request's postprocess starts from, built once: the detection head (reading
    settings is not part of a request), the model's spec and the parsed Triton result."""
    from services.common.triton_client import InferOutput, ModelSpec
    from services.detection.head import DetectHead
    from services.detection.settings import DetectionSettings

    spec = ModelSpec(name="bench_identity", head="detector", inputs={}, input_dtypes={}, outputs=list(out),
                     max_batch_size=8, parameters={"label_map": "coco"})
    provenance = common_pb2.Provenance(model_name="bench_identity", model_version="1", architecture="bench",
                                       weights=common_pb2.WEIGHTS_RANDOM, weights_source="bench")
    return DetectHead(DetectionSettings()), spec, InferOutput(outputs=out, provenance=provenance)


def _postprocess(context, request: detection_pb2.DetectRequest, prepared_lb, size) -> bytes:
    # What services.common.task.run_task does after inference, with the detection head.
    from services.common.task import Inference, respond

    head, spec, result = context
    inference = Inference(request, head.ask(request), spec, prepared_lb, [], result)
    drafts = head.decode(inference, head.budget(float("inf")))
    size_proto = common_pb2.ImageSize(width=size[0], height=size[1])
    return respond(head, inference, drafts, "bench", size_proto).SerializeToString()


STAGES = ("decode_full", "decode_reduced", "exif_transpose_copy", "letterbox", "set_data_from_numpy",
          "triton_request_build", "triton_request_serialize", "detect_request_parse", "postprocess")


def _stages_of(data: bytes, input_size: tuple[int, int], outputs: tuple[str, ...], fixed: dict,
               budget_s: float) -> dict:
    from tritonclient.grpc import InferInput

    reduced = _decode(data, input_size)
    tensor = _letterbox(reduced, input_size)
    request = detection_pb2.DetectRequest(image=common_pb2.Image(data=data, image_id="bench"))
    wire = request.SerializeToString()
    proto = _triton_request("coco_detector", tensor, list(outputs))
    lb = letterbox_for(reduced.width, reduced.height, *input_size)
    size = (reduced.width, reduced.height)
    context = _postprocess_context(fixed)
    return {
        "decode_full": time_call(lambda: _decode(data, None), budget_s=budget_s),
        "decode_reduced": time_call(lambda: _decode(data, input_size), budget_s=budget_s),
        "exif_transpose_copy": time_call(lambda: ImageOps.exif_transpose(reduced.image), budget_s=budget_s),
        "letterbox": time_call(lambda: _letterbox(reduced, input_size), budget_s=budget_s),
        "set_data_from_numpy": time_call(
            lambda: InferInput("IMAGE", list(tensor.shape), "UINT8").set_data_from_numpy(tensor), budget_s=budget_s),
        "triton_request_build": time_call(lambda: _triton_request("coco_detector", tensor, list(outputs)),
                                          budget_s=budget_s),
        "triton_request_serialize": time_call(proto.SerializeToString, budget_s=budget_s),
        "detect_request_parse": time_call(lambda: detection_pb2.DetectRequest.FromString(wire), budget_s=budget_s),
        "postprocess": time_call(lambda: _postprocess(context, request, lb, size), budget_s=budget_s),
    }


def measure(input_size: tuple[int, int] = (320, 320), budget_s: float = 0.25,
            outputs: tuple[str, ...] = ("BOXES", "SCORES", "LABELS", "COUNT", "PROVENANCE")) -> dict:
    """{image name: {stage: {median_ms, ...}, ...}} plus per-image totals and the
    reduced-scale decode gain."""
    serving = ("decode_reduced", "letterbox", "detect_request_parse", "triton_request_build",
               "triton_request_serialize", "postprocess")
    photos = [*images.originals(), *images.jpegs(), images.big_jpeg()]
    results: dict[str, dict] = {}
    fixed = _fixed_outputs()
    for photo in photos:
        stages = _stages_of(photo.data, input_size, outputs, fixed, budget_s)
        full_ms = stages["decode_full"]["median_ms"]
        reduced_ms = stages["decode_reduced"]["median_ms"]
        results[photo.name] = {
            "bytes": len(photo.data),
            "width": photo.width,
            "height": photo.height,
            "megapixels": photo.megapixels,
            "decoded_size": list(_decode(photo.data, input_size).image.size),
            "stages": stages,
            "serving_path_cpu_ms": sum(stages[s]["median_ms"] for s in serving),
            "decode_full_ms_per_mp": full_ms / photo.megapixels,
            "reduced_decode_gain": full_ms / reduced_ms if reduced_ms > 0 else float("nan"),
        }
    return results
