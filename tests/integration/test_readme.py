"""Every Python block of README.md runs as written against the real suite (Triton, the
services, the router): in a folder holding photo.jpg, with the addresses README uses
(the services' default ports on this machine) pointed at the test's servers."""
from __future__ import annotations

import asyncio
import re
import sys

import pytest

from tests.photos import photo
from tests.readme_blocks import README, code_blocks

REPO_ROOT = README.parent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

#: Blocks that need another setup (a photo, the segmentation service) are run by their own
#: test, which finds them by the marker on the line before their fence.
RUN_ELSEWHERE = {"<!-- interactive-session -->": REPO_ROOT / "tests/integration/test_interactive_segmentation.py"}
PYTHON_BLOCKS = [b for b in code_blocks() if b.language == "python" and b.marker not in RUN_ELSEWHERE]
#: What each of README's addresses is (services/*/settings.py default ports).
ADDRESSES = {"127.0.0.1:50051": "router", "127.0.0.1:50052": "detection"}


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"README.md:{b.line}" for b in PYTHON_BLOCKS])
async def test_readme_python_block_runs_as_written_when_suite_serves(block, router_address, detection_address,
                                                                     tmp_path):
    served = {"router": router_address, "detection": detection_address}
    code = block.code
    for address in set(re.findall(r"[\"'](\S+:\d+)[\"']", code)):
        assert address in ADDRESSES, f"README.md:{block.line}: unknown address {address}"
        code = code.replace(address, served[ADDRESSES[address]])
    photo("astronaut.png").convert("RGB").save(tmp_path / "photo.jpg", quality=90)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"README.md:{block.line} failed:\n{text[-4000:]}"
    assert text.strip(), f"README.md:{block.line} printed nothing"
    print(f"README.md:{block.line}:\n{text[-1500:]}")


def test_readme_has_python_blocks_to_run_when_read():
    assert len(PYTHON_BLOCKS) >= 2 and README.is_file()


def test_readme_blocks_run_elsewhere_are_run_by_the_test_they_name():
    marked = [b for b in code_blocks() if b.marker in RUN_ELSEWHERE]
    assert marked, "no README block carries a marker of RUN_ELSEWHERE: drop the entry"
    for block in marked:
        runner = RUN_ELSEWHERE[block.marker]
        assert block.marker in runner.read_text(encoding="utf-8"), f"README.md:{block.line}: {runner} does not run it"
