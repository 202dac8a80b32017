"""Process entry point shared by every service: logging, asyncio, exit codes."""
from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable

from prelabel.core.policy_file import PolicyFileError
from services.common.server import GrpcApp
from services.common.startup import RandomWeightsRefused


def run_app(build: Callable[[], GrpcApp]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        await build().run()

    try:
        asyncio.run(main())
    except RandomWeightsRefused as exc:
        logging.getLogger("prelabel").error("refusing to start: %s", exc)
        sys.exit(3)
    except PolicyFileError as exc:
        logging.getLogger("prelabel").error("refusing to start: %s", exc)
        sys.exit(2)
    except KeyboardInterrupt:
        pass
