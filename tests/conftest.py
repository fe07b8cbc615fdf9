"""Test environment: never touch the network, keep torch to the 2 CI cores."""
import os
import tempfile

# Must be set before huggingface_hub / gradio are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
if "HF_HUB_CACHE" not in os.environ:
    # an empty cache of our own, removed when the test run exits
    _EMPTY_HUB = tempfile.TemporaryDirectory(prefix="pgdvs-empty-hub-")
    os.environ["HF_HUB_CACHE"] = _EMPTY_HUB.name

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
