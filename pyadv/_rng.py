"""Per-problem random streams: a generator keyed by (seed, key, stream), so that what an image
draws depends on its global index, never on the batch it shares."""
from __future__ import annotations

import torch


def keyed_generator(seed: int, key: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one image: keyed by the seed, the image's global index and a stream
    number (a restart, say)."""
    return torch.Generator().manual_seed((seed * 0x9E3779B1 + key + stream * 1000003) % (2 ** 63))
