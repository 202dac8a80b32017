"""The GPU profile served end to end on CPU: every model's configs/gpu.pbtxt loads in a
real embedded tritonserver and answers through its service and the router.

Test-only server (tests/gpu_profile.py): the shipped GPU configs with one CPU instance
and a shrunk IMAGE input (128 px instead of 640/512, so a ResNet-50 R-CNN answers in
about a second on two cores), everything else -- architectures, implementations,
parameters, prompt and output tensors -- as shipped. No R-CNN weights can be here, so
the R-CNNs run with RANDOM initialisation, allowed for this server alone: their labels
are meaningless and the tests check only that they are well formed and that every
response and label says WEIGHTS_RANDOM. MTCNN (face_detector) is the one model whose
real weights ship with its package (facenet-pytorch): it says WEIGHTS_PRETRAINED and
still finds the astronaut's face at 128 px. The random detector names no person on this
photo, so the router's cascade prompts segmentation with its boxes but has no person to
prompt keypoints with (box-prompted keypoints are checked on the service directly).
"""
from __future__ import annotations

import pytest
from pycocotools import mask as coco_mask

from prelabel.v1 import common_pb2, detection_pb2, keypoints_pb2, prelabel_pb2, segmentation_pb2
from tests.conftest import serving, stub
from tests.geometry import iou
from tests.gpu_profile import (
    MODEL_REPOSITORY,
    gpu_models,
    gpu_profile_repository,
    random_weights_triton,
    shrunk_gpu_config,
)
from tests.photos import encode, photo

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RPC_TIMEOUT_S = 60
RANDOM = common_pb2.WEIGHTS_RANDOM
PRETRAINED = common_pb2.WEIGHTS_PRETRAINED
#: Random weights score anyhow: ask for every label (score_threshold 0 too), so no
#: answer is empty because the review policy dropped it.
EVERYTHING = common_pb2.ReviewPolicy(include_rejected=True)

# A non-square crop of a real photo (one person, one face), so a mask or box that is
# mapped back with the wrong letterbox scale or axis order falls outside it.
WIDTH, HEIGHT = 400, 512
IMAGE = common_pb2.Image(data=encode(photo("astronaut.png").convert("RGB").crop((0, 0, WIDTH, HEIGHT))),
                         image_id="astronaut-crop")
FACE_WHERE = (180, 60, 270, 175)  # Eileen Collins' face, source pixels


def architecture(model: str) -> str:
    """The architecture the shipped GPU config names."""
    return shrunk_gpu_config(model).parameters["architecture"].string_value


@pytest.fixture(scope="module")
def gpu_triton(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu-profile")
    with random_weights_triton(gpu_profile_repository(work / "model_repository"), work) as server:
        yield server


@pytest.fixture(scope="module")
async def services(gpu_triton):
    """Detection, segmentation and keypoint services over the GPU-profile Triton."""
    async with serving("detection", "DetectionSettings", triton_url=gpu_triton.grpc_url) as det, \
            serving("segmentation", "SegmentationSettings", triton_url=gpu_triton.grpc_url) as seg, \
            serving("keypoints", "KeypointSettings", triton_url=gpu_triton.grpc_url) as kp:
        yield det, seg, kp


@pytest.fixture(scope="module")
async def gpu_detector(services):
    async with stub(services[0], "detection", "DetectorStub") as s:
        yield s


@pytest.fixture(scope="module")
async def gpu_segmenter(services):
    async with stub(services[1], "segmentation", "SegmenterStub") as s:
        yield s


@pytest.fixture(scope="module")
async def gpu_keypoints(services):
    async with stub(services[2], "keypoints", "KeypointDetectorStub") as s:
        yield s


@pytest.fixture(scope="module")
async def gpu_router(services):
    det, seg, kp = services
    async with serving("router", "RouterSettings", detection_addr=det, segmentation_addr=seg,
                       keypoints_addr=kp) as address, stub(address, "prelabel", "PreLabelerStub") as s:
        yield s


# -- checks ---------------------------------------------------------------------
def assert_random(provenance: common_pb2.Provenance, model: str) -> None:
    assert provenance.model_name == model
    assert provenance.architecture == architecture(model)
    assert provenance.weights == RANDOM, provenance
    assert provenance.weights_source.startswith("random (seed ")


def assert_face_model(provenance: common_pb2.Provenance) -> None:
    assert provenance.model_name == "face_detector" and provenance.architecture == "mtcnn"
    assert provenance.weights == PRETRAINED and "facenet-pytorch" in provenance.weights_source


def assert_inside_image(box: common_pb2.Box) -> None:
    assert 0 <= box.x_min <= box.x_max <= WIDTH and 0 <= box.y_min <= box.y_max <= HEIGHT, box


def assert_detections(detections, model: str) -> None:
    for d in detections:
        assert_inside_image(d.box)
        assert 0 <= d.score <= 1 and d.category.name
        assert_random(d.provenance, model)


def assert_masks(instances) -> None:
    for m in instances:
        assert list(m.mask.size) == [HEIGHT, WIDTH]
        decoded = coco_mask.decode({"size": list(m.mask.size), "counts": m.mask.counts})
        assert decoded.shape == (HEIGHT, WIDTH)
        assert m.area == decoded.sum()
        assert_detections([m.detection], "segmenter")


def assert_person_keypoints(instances) -> None:
    for k in instances:
        assert len(k.keypoints) == 17
        assert all(0 <= p.score <= 1 and p.visibility in (0, 1, 2) for p in k.keypoints)
        assert_detections([k.detection], "keypointer")


def assert_faces(instances) -> None:
    assert instances, "MTCNN (real weights) finds the astronaut's face at 128 px"
    best = instances[0]
    assert iou((best.detection.box.x_min, best.detection.box.y_min, best.detection.box.x_max,
                best.detection.box.y_max), FACE_WHERE) > 0.5, best.detection.box
    for f in instances:
        assert len(f.keypoints) == 5
        assert_inside_image(f.detection.box)
        assert_face_model(f.detection.provenance)


# -- the repository -----------------------------------------------------------------
def test_repository_holds_every_gpu_config_shrunk_onto_one_cpu_instance():
    assert gpu_models() == sorted(p.name for p in MODEL_REPOSITORY.iterdir() if p.is_dir())
    for model in gpu_models():
        config = shrunk_gpu_config(model)
        assert [tuple(t.dims) for t in config.input if t.name == "IMAGE"] == [(128, 128, 3)]
        assert [(g.kind, g.count) for g in config.instance_group] == [(config.instance_group[0].KIND_CPU, 1)]
    assert architecture("coco_detector") == "fasterrcnn_resnet50_fpn_v2"
    assert architecture("segmenter") == "maskrcnn_resnet50_fpn_v2"
    assert architecture("keypointer") == "keypointrcnn_resnet50_fpn"


# -- each service -------------------------------------------------------------------
async def test_detect_answers_with_the_gpu_detector_and_random_provenance(gpu_detector):
    reply = await gpu_detector.Detect(detection_pb2.DetectRequest(
        image=IMAGE, score_threshold=0.0, review_policy=EVERYTHING), timeout=RPC_TIMEOUT_S)
    assert (reply.image_size.width, reply.image_size.height) == (WIDTH, HEIGHT)
    assert_random(reply.provenance, "coco_detector")
    assert reply.detections, "a random R-CNN still keeps candidates above its score floor"
    assert_detections(reply.detections, "coco_detector")


async def test_detect_finds_the_face_with_mtcnn_from_its_gpu_config(gpu_detector):
    reply = await gpu_detector.Detect(detection_pb2.DetectRequest(image=IMAGE, model="face_detector"),
                                      timeout=RPC_TIMEOUT_S)
    assert_face_model(reply.provenance)
    assert reply.detections
    d = reply.detections[0]
    assert iou((d.box.x_min, d.box.y_min, d.box.x_max, d.box.y_max), FACE_WHERE) > 0.5, d.box


async def test_segment_automatic_returns_masks_at_source_size_from_the_gpu_segmenter(gpu_segmenter):
    reply = await gpu_segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=IMAGE, score_threshold=0.0, review_policy=EVERYTHING), timeout=RPC_TIMEOUT_S)
    assert_random(reply.provenance, "segmenter")
    assert reply.instances
    assert_masks(reply.instances)


async def test_segment_box_prompted_returns_one_mask_per_prompt_inside_its_box(gpu_segmenter):
    prompts = [common_pb2.Box(x_min=150, y_min=40, x_max=300, y_max=200),
               common_pb2.Box(x_min=0, y_min=250, x_max=WIDTH, y_max=HEIGHT)]
    reply = await gpu_segmenter.Segment(segmentation_pb2.SegmentRequest(
        image=IMAGE, prompts=[segmentation_pb2.BoxPrompt(box=b) for b in prompts], mask_threshold=0.01),
        timeout=RPC_TIMEOUT_S)
    assert_random(reply.provenance, "segmenter")
    assert [m.prompt_index for m in reply.instances] == [0, 1]
    assert_masks(reply.instances)
    for prompt, instance in zip(prompts, reply.instances, strict=True):
        assert instance.detection.box == prompt
        decoded = coco_mask.decode({"size": list(instance.mask.size), "counts": instance.mask.counts})
        rows, cols = decoded.nonzero()
        assert len(rows), "random mask logits sit near 0.5, far above 0.01"
        assert prompt.x_min <= cols.min() and cols.max() < prompt.x_max
        assert prompt.y_min <= rows.min() and rows.max() < prompt.y_max


async def test_person_keypoints_automatic_and_prompted_give_17_points_per_person(gpu_keypoints):
    automatic = await gpu_keypoints.DetectKeypoints(keypoints_pb2.KeypointRequest(
        image=IMAGE, kind=keypoints_pb2.KEYPOINT_KIND_PERSON, score_threshold=0.0, review_policy=EVERYTHING),
        timeout=RPC_TIMEOUT_S)
    assert automatic.schema.name == "coco_person_17"
    assert_random(automatic.provenance, "keypointer")
    assert automatic.instances
    assert_person_keypoints(automatic.instances)

    person = common_pb2.Box(x_min=10, y_min=10, x_max=365, y_max=HEIGHT)
    prompted = await gpu_keypoints.DetectKeypoints(keypoints_pb2.KeypointRequest(
        image=IMAGE, kind=keypoints_pb2.KEYPOINT_KIND_PERSON, prompt_boxes=[person]), timeout=RPC_TIMEOUT_S)
    assert [k.prompt_index for k in prompted.instances] == [0]
    assert prompted.instances[0].detection.box == person
    assert_person_keypoints(prompted.instances)


async def test_face_keypoints_come_from_the_gpu_face_config(gpu_keypoints):
    reply = await gpu_keypoints.DetectKeypoints(keypoints_pb2.KeypointRequest(
        image=IMAGE, kind=keypoints_pb2.KEYPOINT_KIND_FACE), timeout=RPC_TIMEOUT_S)
    assert reply.schema.name == "face_5"
    assert_face_model(reply.provenance)
    assert_faces(reply.instances)


# -- the router -----------------------------------------------------------------------
def has_area(box: common_pb2.Box) -> bool:
    return box.x_max > box.x_min and box.y_max > box.y_min


@pytest.mark.parametrize("cascade", [False, True])
async def test_prelabel_answers_every_task_from_the_gpu_profile(gpu_router, cascade):
    reply = await gpu_router.PreLabel(prelabel_pb2.PreLabelRequest(
        image=IMAGE, cascade=cascade, max_labels=8, score_threshold=0.0, review_policy=EVERYTHING),
        timeout=RPC_TIMEOUT_S * 2)
    codes = {prelabel_pb2.Task.Name(r.task): r.code for r in reply.task_results}
    assert codes == {"TASK_DETECT": "OK", "TASK_SEGMENT": "OK", "TASK_KEYPOINTS": "OK", "TASK_FACES": "OK"}
    assert (reply.image_size.width, reply.image_size.height) == (WIDTH, HEIGHT)
    served = {r.task: r.provenance for r in reply.task_results}
    assert_random(served[prelabel_pb2.TASK_DETECT], "coco_detector")
    assert_random(served[prelabel_pb2.TASK_SEGMENT], "segmenter")
    assert_face_model(served[prelabel_pb2.TASK_FACES])

    assert reply.detections and reply.masks
    assert_detections(reply.detections, "coco_detector")
    assert_masks(reply.masks)
    assert_person_keypoints(reply.person_keypoints)
    assert_faces(reply.faces)
    if not cascade:
        assert_random(served[prelabel_pb2.TASK_KEYPOINTS], "keypointer")
        assert reply.person_keypoints
        return
    # Segmentation and keypoints were prompted with the detector's boxes (boxes clipped
    # to no area prompt nothing), keypoints with its persons only.
    assert [m.detection.box for m in reply.masks] == [d.box for d in reply.detections if has_area(d.box)]
    persons = [d.box for d in reply.detections if d.category.name == "person" and has_area(d.box)]
    assert [k.detection.box for k in reply.person_keypoints] == persons
    if persons:
        assert_random(served[prelabel_pb2.TASK_KEYPOINTS], "keypointer")
    else:  # random weights name no person here: the keypoint model is rightly not called
        assert served[prelabel_pb2.TASK_KEYPOINTS].model_name == ""
