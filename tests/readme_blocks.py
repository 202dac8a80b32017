"""README.md's fenced code blocks, by language, for the tests that run or check them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    language: str  # "" for a block without one
    code: str
    line: int  # where its fence opens in README.md (1-based)
    marker: str = ""  # an HTML comment on the line before the fence (another test runs that block)


def _marker_before(text: str, start: int) -> str:
    previous = text[:start].rstrip("\n").rsplit("\n", 1)[-1].strip()
    return previous if previous.startswith("<!--") else ""


def code_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text() if text is None else text
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1, _marker_before(text, m.start()))
            for m in _FENCE.finditer(text)]
