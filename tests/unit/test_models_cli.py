"""`prelabel models`: published files fetched over a real loopback HTTP server, the
lock's hashes enforced, tampering detected, conversion reproducible."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
import time

import pytest

from prelabel import models as cli
from prelabel.cli import main
from prelabel.core.models import catalog, store
from services.modelkit.onnx_session import open_session

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def published(content: bytes, prefix: str | None = None) -> catalog.PublishedFile:
    prefix = prefix or hashlib.sha256(content).hexdigest()[:8]
    name = f"tiny_detector_coco-{prefix}.pth"
    return catalog.PublishedFile(name=name, url=f"https://example.invalid/{name}", architecture="tiny",
                                 license="test", published_accuracy="")


def test_pull_caches_a_published_file_when_its_hash_matches_its_name(http_root, tmp_path):
    root, url = http_root
    content = b"weights" * 1000
    f = published(content)
    (root / f.name).write_bytes(content)
    entries = cli.pull_published(tmp_path / "cache", url, [f])
    cached = cli.published_path(tmp_path / "cache", f.name)
    assert cached.read_bytes() == content
    assert entries[f.name]["sha256_prefix"] == f.sha256_prefix
    # Idempotent: a second pull does not download again.
    (root / f.name).unlink()
    cli.pull_published(tmp_path / "cache", url, [f])


def test_pull_refuses_a_published_file_when_its_hash_differs_from_its_name(http_root, tmp_path):
    root, url = http_root
    f = published(b"the real weights")
    (root / f.name).write_bytes(b"something else")
    with pytest.raises(cli.PullError, match="refused"):
        cli.pull_published(tmp_path / "cache", url, [f])
    assert not cli.published_path(tmp_path / "cache", f.name).exists()
    assert not list((tmp_path / "cache" / "torchvision").glob("*.part"))


def test_pull_fails_at_once_naming_file_url_and_place_when_offline(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    f = published(b"x")
    started = time.monotonic()
    with pytest.raises(cli.PullError) as err:
        cli.pull_published(tmp_path / "cache", f"http://127.0.0.1:{port}", [f])
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert f.name in message and f"127.0.0.1:{port}/{f.name}" in message
    assert str(cli.published_path(tmp_path / "cache", f.name)) in message


def test_gpu_profile_names_the_torchvision_weights_with_their_published_hash_prefixes():
    prefixes = {f.architecture: f.sha256_prefix for f in catalog.PUBLISHED.values()}
    assert prefixes == {"fasterrcnn_resnet50_fpn_v2": "dd69338a", "maskrcnn_resnet50_fpn_v2": "73cbd019",
                        "keypointrcnn_resnet50_fpn": "fc266e95"}


@pytest.fixture
def cache_copy(tmp_path):
    """A copy of the real model cache that a test may damage."""
    source = store.default_cache_dir() / "onnx"
    copy = tmp_path / "cache"
    shutil.copytree(source, copy / "onnx")
    return copy


def test_verify_and_model_load_refuse_a_cache_file_when_it_was_tampered(cache_copy, capsys):
    path = store.locked_model("selfie").path(cache_copy)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["models", "verify", "--cache-dir", str(cache_copy)]) == 1
    assert "selfie" in capsys.readouterr().err
    with pytest.raises(store.ModelFileError, match="refusing to serve"):
        open_session("selfie", 1, cache_copy)
    assert main(["models", "verify", "--cache-dir", str(store.default_cache_dir())]) == 0


def test_model_load_says_how_to_fetch_when_the_cache_is_empty(tmp_path):
    with pytest.raises(store.ModelFileError, match="prelabel models pull"):
        open_session("nanodet", 1, tmp_path)


def test_conversion_reproduces_the_locked_file_when_cache_is_clean(tmp_path):
    """From a clean ONNX cache, converting selfie again yields the SHA-256 in the lock
    (tarball and converter virtualenv reused: they are verified, not rebuilt)."""
    real = store.default_cache_dir()
    clean = tmp_path / "cache"
    clean.mkdir()
    for shared in ("npm", "converter"):
        (clean / shared).symlink_to(real / shared)
    lock = store.read_lock()
    entries = cli.pull_converted(clean, lock, update_lock=False, names=["selfie"])
    assert entries["selfie"] == lock["converted"]["selfie"]
    path, _ = store.verified_model_path("selfie", clean)
    assert path.parent == clean / "onnx"
