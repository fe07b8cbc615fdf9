"""Test environment: never touch the network, keep torch to the 2 CI cores."""
import os
import tempfile

# Must be set before huggingface_hub / gradio are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_CACHE", tempfile.mkdtemp(prefix="pgdvs-empty-hub-"))

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
