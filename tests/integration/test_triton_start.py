"""The embedded Triton starts when a user model is broken: the models the suite needs are
served and the broken one is reported with Triton's reason, while a broken required model
ends the start at once, naming it and the reason (a real tritonserver with two tiny
python-backend models: one answers, one raises in initialize as a model with a missing
weights file does)."""
from __future__ import annotations

import time

import pytest
import tritonclient.grpc as triton_grpc

from services.embedded_triton.launcher import EmbeddedTriton, TritonStartError
from services.embedded_triton.settings import TritonSettings
from tests.triton_server import running_triton

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONFIG = """backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""
WORKING = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""
BROKEN = """class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("weights file missing (planted by the test)")
"""


def model(repository, name: str, code: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(CONFIG)
    (repository / name / "1" / "model.py").write_text(code)


def settings(built_in, user) -> TritonSettings:
    return TritonSettings(model_repository=built_in, user_model_repository=user, grpc_port=0, http_port=0,
                          metrics_port=0, startup_timeout_s=120)


def test_a_broken_user_model_is_reported_and_the_built_in_models_are_served(tmp_path):
    built_in, user = tmp_path / "repo", tmp_path / "user"
    model(built_in, "working", WORKING)
    model(user, "broken_user_model", BROKEN)
    with running_triton(settings(built_in, user), tmp_path / "triton.log") as triton:
        assert list(triton.unavailable) == ["broken_user_model"]
        assert "weights file missing (planted by the test)" in triton.unavailable["broken_user_model"]
        assert triton.is_ready()
        client = triton_grpc.InferenceServerClient(triton.grpc_url)
        assert client.is_model_ready("working") and not client.is_model_ready("broken_user_model")
        client.close()


def test_a_broken_required_model_ends_the_start_at_once_naming_it_and_why(tmp_path):
    built_in = tmp_path / "repo"
    model(built_in, "working", WORKING)
    model(built_in, "broken_built_in", BROKEN)
    triton = EmbeddedTriton(settings(built_in, tmp_path / "absent"), log_path=tmp_path / "triton.log")
    started = time.monotonic()
    with pytest.raises(TritonStartError, match="broken_built_in: .*weights file missing"):
        triton.start()
    assert time.monotonic() - started < 60  # not the 120 s startup timeout
    assert triton.process is None and not triton.is_ready()  # stopped and cleaned up, not left running
