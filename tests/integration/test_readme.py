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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PYTHON_BLOCKS = [b for b in code_blocks() if b.language == "python"]
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
