"""PGDVS Space entry point: ``python app.py`` serves the app (http://127.0.0.1:7860 unless GRADIO_SERVER_NAME/PORT
say otherwise). Works offline on a CPU with the classical backends; learned models switch in once downloaded."""
import atexit
import os
import signal
import sys

# No analytics or telemetry requests, whatever the environment says.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pgdvs.app.session import SessionStore  # noqa: E402
from pgdvs.app.ui import build_demo  # noqa: E402
from pgdvs.hub.registry import ModelHub  # noqa: E402

store = SessionStore(os.environ.get("PGDVS_APP_ROOT") or None)
atexit.register(store.close_all)
hub = ModelHub.default().start()
demo = build_demo(store, hub)

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the atexit clean-up on `kill` / Space restarts
    demo.queue(max_size=32, default_concurrency_limit=4)
    demo.launch(ssr_mode=False, max_file_size="500mb")
