"""Meta's SAM checkpoints through `prelabel models pull` (prelabel/sam_checkpoints.py): a
checkpoint served over loopback HTTP is fetched, checked against its MD5, exported by Meta's
segment_anything code in the SAM export virtualenv and added as a SAM pair that passes the
add-time interface checks; a second pull downloads and exports nothing; a file whose MD5
differs is refused and nothing is cached. No network here: the checkpoint is a tiny SAM
(SAM's decoder at its published sizes, a one-block encoder) with **random weights**, under a
test catalog entry that says so (the pair's provenance reads `random`); the real entries'
URLs and MD5s are checked for form only."""
from __future__ import annotations

import hashlib
import re
import subprocess

import pytest

from prelabel import sam_checkpoints
from prelabel.core.models import catalog, store
from prelabel.core.models.user_models import list_user_models
from prelabel.export_venv import export_venv
from tests.unit.test_models_cli import http_root  # noqa: F401  # fixture: a loopback file server

pytestmark = [pytest.mark.tools, pytest.mark.timeout(900)]


@pytest.fixture
def cache(tmp_path):
    """A clean model cache sharing only the export virtualenv with the real one."""
    real = store.default_cache_dir()
    export_venv(real, "sam-exporter", catalog.SAM_EXPORT_PACKAGES, "the SAM exporter")
    clean = tmp_path / "cache"
    clean.mkdir()
    (clean / "sam-exporter").symlink_to(real / "sam-exporter")
    return clean


def tiny_checkpoint(cache, path) -> bytes:
    python = export_venv(cache, "sam-exporter", catalog.SAM_EXPORT_PACKAGES, "the SAM exporter")
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); import sam_to_onnx; torch.manual_seed(0); "
            "torch.save(sam_to_onnx.tiny_sam().state_dict(), sys.argv[2])")
    subprocess.run([str(python), "-c", code, str(sam_checkpoints.EXPORT_SCRIPT.parent), str(path)], check=True,
                   timeout=300)
    return path.read_bytes()


def entry(name: str, md5: str) -> dict[str, catalog.SamCheckpoint]:
    return {name: catalog.SamCheckpoint(name=name, architecture="tiny", url=f"https://example.invalid/{name}.pth",
                                        md5=md5, description="tiny SAM, random weights (test)", weights="random")}


def test_pull_fetches_checks_exports_and_adds_a_sam_pair_once(http_root, cache, tmp_path, capsys):  # noqa: F811
    root, url = http_root
    data = tiny_checkpoint(cache, root / "sam_tiny.pth")
    repo = tmp_path / "user-models"
    known = entry("sam_tiny", hashlib.md5(data, usedforsecurity=False).hexdigest())
    added = sam_checkpoints.pull_sam("sam_tiny", cache, repo, base_url=url, checkpoints=known)
    assert sorted(m.name for m in added) == ["sam_tiny_decoder", "sam_tiny_encoder"]
    assert {m.weights for m in added} == {"random"} and {m.license for m in added} == {"Apache-2.0"}
    assert sorted(m.name for m in list_user_models(repo)) == ["sam_tiny_decoder", "sam_tiny_encoder"]
    record = (cache / "sam" / "sam_tiny.pth.sha256").read_text()
    assert record.split()[0] == hashlib.sha256(data).hexdigest()
    assert "MD5" in capsys.readouterr().err

    (root / "sam_tiny.pth").unlink()  # a second pull needs neither the network nor an export
    again = sam_checkpoints.pull_sam("sam_tiny", cache, repo, base_url=url, checkpoints=known)
    assert {(m.name, m.sha256) for m in again} == {(m.name, m.sha256) for m in added}


def test_pull_refuses_a_checkpoint_whose_md5_differs_and_caches_nothing(http_root, cache, tmp_path):  # noqa: F811
    root, url = http_root
    (root / "sam_tiny.pth").write_bytes(b"not the published file")
    with pytest.raises(sam_checkpoints.SamPullError, match="MD5 .* the published one is 0{32}: refused"):
        sam_checkpoints.pull_sam("sam_tiny", cache, tmp_path / "user-models", base_url=url,
                                 checkpoints=entry("sam_tiny", "0" * 32))
    assert not list((cache / "sam").iterdir())
    assert not (tmp_path / "user-models").exists()


def test_pull_offline_names_the_file_its_url_and_where_to_put_it(tmp_path):
    with pytest.raises(sam_checkpoints.SamPullError, match=r"sam_vit_b_01ec64\.pth .* put it at .*sam_vit_b_01ec64"):
        sam_checkpoints.ensure_checkpoint(catalog.SAM_CHECKPOINTS["sam_vit_b"], tmp_path, "http://127.0.0.1:9")


def test_the_published_checkpoints_carry_their_md5_prefix_in_their_names():
    for checkpoint in catalog.SAM_CHECKPOINTS.values():
        assert re.fullmatch(r"[0-9a-f]{32}", checkpoint.md5)
        assert checkpoint.file_name == f"sam_{checkpoint.architecture}_{checkpoint.md5[:6]}.pth"
        assert checkpoint.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/")
    assert catalog.PROFILES["gpu"].sam == ["sam_vit_b"] and not catalog.PROFILES["cpu"].sam
