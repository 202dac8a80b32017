"""TLS, mutual TLS and token auth on a real router gRPC server (certificates made
with openssl for the test), and static guarantees: no pickle, no URL fetching,
Triton on loopback, Pillow with the libwebp fix."""
from __future__ import annotations

import ast
import contextlib
import subprocess
from pathlib import Path

import grpc
import PIL
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from packaging.version import Version

from prelabel.v1 import common_pb2, prelabel_pb2, prelabel_pb2_grpc
from services.common.metrics import Metrics
from services.embedded_triton.launcher import EmbeddedTriton
from services.embedded_triton.settings import TritonSettings
from services.router.app import build_app
from services.router.settings import RouterSettings
from tests.conftest import REPO_ROOT, running
from tests.integration.slow_services import slow_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REQUEST = prelabel_pb2.PreLabelRequest(image=common_pb2.Image(data=b"x", image_id="i"),
                                       tasks=[prelabel_pb2.TASK_DETECT])


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)
    return d


@contextlib.asynccontextmanager
async def secure_router(pki: Path, mutual: bool, tokens: dict | None = None):
    async with slow_service("detection", 0.0) as (d, rec), slow_service("segmentation", 0.0) as (s, _), \
            slow_service("keypoints", 0.0) as (k, _):
        settings = RouterSettings(
            grpc_port=0, metrics_port=None, detection_addr=d, segmentation_addr=s, keypoints_addr=k,
            tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key",
            tls_client_ca_file=(pki / "ca.pem") if mutual else None,
            auth_tokens=tokens or {}, downstream_token="router-secret" if tokens else None)
        app = build_app(settings, Metrics("router"))
        async with running(app, wait_ready=False) as address:
            yield address, rec


def credentials(pki: Path, client_cert: bool) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if client_cert else None,
        certificate_chain=(pki / "client.pem").read_bytes() if client_cert else None)


async def call(address: str, creds=None, token: str | None = None):
    channel = grpc.aio.secure_channel(address, creds) if creds else grpc.aio.insecure_channel(address)
    async with channel:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return await prelabel_pb2_grpc.PreLabelerStub(channel).PreLabel(REQUEST, timeout=5, metadata=metadata)


async def test_router_serves_tls_and_refuses_plaintext_when_certificate_configured(pki):
    async with secure_router(pki, mutual=False) as (address, _):
        reply = await call(address, credentials(pki, client_cert=False))
        assert reply.task_results[0].code == "OK"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(address)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_router_requires_client_certificate_when_mutual_tls(pki):
    async with secure_router(pki, mutual=True) as (address, _):
        assert (await call(address, credentials(pki, client_cert=True))).task_results[0].code == "OK"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(address, credentials(pki, client_cert=False))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_router_checks_tokens_and_permissions_but_leaves_health_open(pki):
    tokens = {"bulk": ["*"], "viewer": ["Detect"]}
    async with secure_router(pki, mutual=False, tokens=tokens) as (address, rec):
        creds = credentials(pki, client_cert=False)
        assert (await call(address, creds, token="bulk")).task_results[0].code == "OK"
        assert rec.authorization == ["Bearer router-secret"]  # the router's own token downstream
        for token, code in ((None, grpc.StatusCode.UNAUTHENTICATED), ("wrong", grpc.StatusCode.UNAUTHENTICATED),
                            ("viewer", grpc.StatusCode.PERMISSION_DENIED)):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(address, creds, token=token)
            assert err.value.code() == code, token
        async with grpc.aio.secure_channel(address, creds) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _python_files(*folders: str):
    for folder in folders:
        yield from (REPO_ROOT / folder).rglob("*.py")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


#: The only modules allowed an HTTP client, and why.
HTTP_CLIENTS = {
    "prelabel/published_files.py": "`prelabel models pull`: the fixed published URLs of the catalog (or an "
                                   "operator's --base-url), never a URL that arrives in a request",
    "prelabel/ls_backend/fetch.py": "Label Studio task images, only from allow-listed hosts, byte-capped",
}


def test_serving_code_imports_no_pickle_and_fetches_no_urls():
    for path in _python_files("services", "prelabel"):
        if "/v1/" in str(path):
            continue
        imported = _imports(path)
        assert not imported & {"pickle", "cPickle", "dill", "marshal"}, path
        if path.relative_to(REPO_ROOT).as_posix() not in HTTP_CLIENTS:
            assert not imported & {"urllib.request", "requests", "httpx", "aiohttp"}, path
    source = (REPO_ROOT / "services/modelkit/weights.py").read_text()
    assert "weights_only=True" in source


def test_embedded_triton_binds_loopback_and_model_control_none_when_defaults():
    command = EmbeddedTriton(TritonSettings(grpc_port=1, http_port=2, metrics_port=3)).command()
    assert "--grpc-address=127.0.0.1" in command and "--http-address=127.0.0.1" in command
    assert "--metrics-address=127.0.0.1" in command
    assert "--model-control-mode=none" in command


def test_pillow_has_libwebp_and_decoder_cve_fixes():
    assert Version(PIL.__version__) >= Version("10.3")
