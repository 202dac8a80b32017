"""Triton's admin endpoints on the embedded server: changing log or trace settings or
asking for the model repository needs the launch's admin key; without it any local
process could reconfigure Triton. Inference, health and statistics stay open."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def http_post(url: str, body: dict, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.parametrize("path,body", [("/v2/logging", {"log_verbose_level": 1}),
                                       ("/v2/trace/setting", {}),
                                       ("/v2/repository/index", {})])
def test_triton_http_refuses_admin_call_when_admin_key_is_missing(triton, path, body):
    assert http_post(triton.http_url + path, body) == 403
    assert http_post(triton.http_url + path, body, triton.admin_headers) != 403  # admitted


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
