"""A PreLabeler on loopback (real gRPC) that answers every image with the hand-built
labels of tests/tools/samples.py, scaled to the image's real size: the Label Studio
backend and the CVAT function are tested through the real client path without depending
on what a model finds."""
from __future__ import annotations

import io
from concurrent import futures

import grpc
from PIL import Image

from prelabel.v1 import prelabel_pb2, prelabel_pb2_grpc
from tests.tools.samples import response_for

_FIELDS = {prelabel_pb2.TASK_DETECT: "detections", prelabel_pb2.TASK_SEGMENT: "masks",
           prelabel_pb2.TASK_KEYPOINTS: "person_keypoints", prelabel_pb2.TASK_FACES: "faces"}


class SampleRouter(prelabel_pb2_grpc.PreLabelerServicer):
    def __init__(self):
        self.requests: list[prelabel_pb2.PreLabelRequest] = []

    def PreLabel(self, request, context):
        self.requests.append(request)
        with Image.open(io.BytesIO(request.image.data)) as im:
            w, h = im.size
        response = response_for(request.image.image_id, w, h, len(self.requests))
        for task, name in _FIELDS.items():
            if task not in request.tasks:
                response.ClearField(name)
        for task in request.tasks:
            response.task_results.add(task=task, code="OK")
        return response


    def PreLabelStream(self, request_iterator, context):
        for request in request_iterator:
            yield self.PreLabel(request, context)


def start() -> tuple[grpc.Server, SampleRouter, str]:
    servicer = SampleRouter()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prelabel_pb2_grpc.add_PreLabelerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, servicer, f"127.0.0.1:{port}"
