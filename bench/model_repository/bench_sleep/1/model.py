"""bench_sleep: detector-shaped outputs (no detections) after sleeping
base_ms + per_image_ms * batch: a stand-in with a batching profile and no CPU cost."""
import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils

N_SLOTS = 100


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.base_s = float(params.get("base_ms", "20")) / 1e3
        self.per_image_s = float(params.get("per_image_ms", "2")) / 1e3
        provenance = json.dumps(
            {"architecture": "bench_sleep", "kind": "random", "source": "bench (sleep, no outputs)"}
        ).encode()
        self.one = {
            "BOXES": np.zeros((1, N_SLOTS, 4), np.float32),
            "SCORES": np.zeros((1, N_SLOTS), np.float32),
            "LABELS": np.zeros((1, N_SLOTS), np.int32),
            "COUNT": np.zeros((1, 1), np.int32),
            "PROVENANCE": np.array([[provenance]], dtype=object),
        }

    def execute(self, requests):
        sizes = [pb_utils.get_input_tensor_by_name(r, "IMAGE").as_numpy().shape[0] for r in requests]
        time.sleep(self.base_s + self.per_image_s * sum(sizes))
        responses = []
        for size in sizes:
            tensors = [
                pb_utils.Tensor(name, value if size == 1 else np.repeat(value, size, axis=0))
                for name, value in self.one.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
