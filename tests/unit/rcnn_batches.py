"""Input batches for the PromptableRcnn model bodies (services/modelkit/rcnn.py: the
segmenter and the keypointer share its prompt inputs)."""
from __future__ import annotations

import numpy as np

#: Prompt rows of the GPU profile's configs (PROMPT_BOXES dims [32, 4]).
PROMPT_ROWS = 32
#: IMAGE side of the lite configs (tests/unit/triton_models.py: rcnn_lite_config).
LITE_SIZE = 320


def random_images(seed: int, n: int = 2) -> np.ndarray:
    """`n` random RGB images of the lite configs' size, the same for the same seed."""
    return np.random.default_rng(seed).integers(0, 256, (n, LITE_SIZE, LITE_SIZE, 3), dtype=np.uint8)


def prompt_batch(images: np.ndarray, prompts: list[list[tuple]], labels: list[list[int]] | None = None) -> dict:
    """`images` with item i's `prompts[i]` boxes (none: automatic mode) in the padded prompt
    rows; PROMPT_LABELS (the segmenter's input) only when `labels` is given, 0 = unknown."""
    inputs = {
        "IMAGE": images,
        "PROMPT_BOXES": np.zeros((len(images), PROMPT_ROWS, 4), np.float32),
        "PROMPT_COUNT": np.array([[len(p)] for p in prompts], np.int32),
    }
    for i, boxes in enumerate(prompts):
        if boxes:
            inputs["PROMPT_BOXES"][i, : len(boxes)] = boxes
    if labels is not None:
        inputs["PROMPT_LABELS"] = np.zeros((len(images), PROMPT_ROWS), np.int32)
        for i, item_labels in enumerate(labels):
            if item_labels:
                inputs["PROMPT_LABELS"][i, : len(item_labels)] = item_labels
    return inputs
