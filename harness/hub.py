"""Is the Hugging Face hub reachable? Asked once per process, so an offline machine fails in seconds with
one clear line instead of minutes of retries inside `datasets` or `transformers`."""

from __future__ import annotations

import os
import socket
from functools import lru_cache

HUB_HOST = "huggingface.co"
OFFLINE_HINT = (
    "the Hugging Face hub is not reachable (offline, or HF_HUB_OFFLINE is set); pass --data-dir DIR "
    "(or set CGD_BENCH_DATA) for benchmark data, and a local folder or a named model for --model"
)


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0] if endpoint else HUB_HOST
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            pass
    except OSError:
        # Every later hub call in this process (transformers, datasets) fails fast instead of retrying.
        os.environ["HF_HUB_OFFLINE"] = "1"
        return False
    return True
