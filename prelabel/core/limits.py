"""Request limits that the servers enforce and the client checks before it sends."""
from __future__ import annotations

#: Image.image_id, bytes of UTF-8 (it is echoed in replies, journals and outputs).
MAX_IMAGE_ID_BYTES = 512

#: Encoded image bytes a server accepts by default (its `max_image_bytes` setting); the
#: clients refuse a larger file before reading it into a request.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
