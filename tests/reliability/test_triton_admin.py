"""Triton's admin endpoints on the embedded server: changing log or trace settings or
asking for the model repository needs the launch's admin key; without it any local
process could reconfigure Triton. Inference, health and statistics stay open. Its HTTP
endpoint is not served at all, and a stopped server leaves no temp dir behind."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def http_post(url: str, body: dict, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_triton_serves_no_http_when_embedded_with_defaults(triton):
    """Closed, not merely restricted: the admin key is on Triton's command line."""
    with pytest.raises(urllib.error.URLError):
        http_post(triton.http_url + "/v2/repository/index", {}, triton.admin_headers)


@pytest.mark.parametrize("call,request_type", [("RepositoryIndex", service_pb2.RepositoryIndexRequest),
                                               ("TraceSetting", service_pb2.TraceSettingRequest)])
def test_triton_grpc_refuses_admin_call_when_admin_key_is_missing(triton, call, request_type):
    with grpc.insecure_channel(triton.grpc_url) as channel:
        method = getattr(service_pb2_grpc.GRPCInferenceServiceStub(channel), call)
        with pytest.raises(grpc.RpcError) as caught:
            method(request_type(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.code()
        method(request_type(), timeout=10, metadata=triton.admin_grpc_metadata)  # admitted


def test_embedded_triton_removes_its_temp_dir_when_stopped(tmp_path):
    server = EmbeddedTriton(TritonSettings(grpc_port=0, metrics_port=0, models=["coco_detector"]),
                            tmp_path / "triton.log")
    with server:
        workdir = server._workdir
        assert workdir is not None and workdir.is_dir()
    assert not workdir.exists(), f"{workdir} left behind"


def test_triton_grpc_refuses_log_settings_when_admin_key_is_missing(triton):
    with grpc.insecure_channel(triton.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.LogSettingsRequest()
        with pytest.raises(grpc.RpcError) as caught:
            stub.LogSettings(request, timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.code()
        stub.LogSettings(request, timeout=10, metadata=triton.admin_grpc_metadata)
    client = triton_grpc.InferenceServerClient(triton.grpc_url)
    try:  # what the services and tests use stays open
        assert client.is_server_ready()
        assert client.get_inference_statistics(as_json=True) is not None
    finally:
        client.close()
