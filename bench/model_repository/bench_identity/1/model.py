"""bench_identity: a detector-shaped Python-backend model that does no work.

Every request gets the same 10 detections (COCO ids 1-10, scores 0.90 down to 0.45),
so the service's postprocess does its real work (threshold, top-k, protos) while the
model itself costs nothing. numpy only: no torch import, loads in well under a second.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

N_SLOTS = 100
N_BOXES = 10


class TritonPythonModel:
    def initialize(self, args):
        boxes = np.zeros((1, N_SLOTS, 4), np.float32)
        scores = np.zeros((1, N_SLOTS), np.float32)
        labels = np.zeros((1, N_SLOTS), np.int32)
        for i in range(N_BOXES):
            boxes[0, i] = (10 + 25 * i, 20, 40 + 25 * i, 80 + 10 * i)
            scores[0, i] = 0.90 - 0.05 * i
            labels[0, i] = i + 1
        provenance = json.dumps(
            {"architecture": "bench_identity", "kind": "random", "source": "bench (fixed outputs)"}
        ).encode()
        self.outputs = {
            "BOXES": boxes,
            "SCORES": scores,
            "LABELS": labels,
            "COUNT": np.array([[N_BOXES]], np.int32),
            "PROVENANCE": np.array([[provenance]], dtype=object),
        }

    def execute(self, requests):
        responses = []
        for request in requests:
            batch = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().shape[0]
            tensors = [
                pb_utils.Tensor(name, value if batch == 1 else np.repeat(value, batch, axis=0))
                for name, value in self.outputs.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
