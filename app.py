"""GPT-2 Playground: `python app.py` serves the browser demo at http://127.0.0.1:7860 (flags: `python app.py -h`).

On Hugging Face Spaces environment variables choose the model and the address (see demo/config.py).
`demo` is module-level for `gradio app.py` (reload mode); imported that way, only environment variables apply.
"""

import logging
import os
import sys
from pathlib import Path

# `gradio app.py` (reload mode) would watch this whole folder, .venv's thousands of files included, and keep a core
# busy: watch the project's own code instead (before gradio is imported, which reads this once). Edits to this file
# itself need a restart.
if os.environ.get("GRADIO_WATCH_DIRS"):
    os.environ["GRADIO_WATCH_DIRS"] = ",".join(str(Path(__file__).resolve().parent / d) for d in ("demo", "gpt2_core"))

from demo import AppConfig, build_demo, launch_options, startup_message  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
config = AppConfig.from_env_and_args(sys.argv[1:] if __name__ == "__main__" else [])
demo = build_demo(config)

if __name__ == "__main__":
    demo.launch(**config.launch_kwargs(), **launch_options(), quiet=True, prevent_thread_lock=True)
    if demo.local_url:  # not when reload mode re-runs this file (it serves nothing then)
        print(startup_message(demo, config), flush=True)  # Gradio's own would suggest editing launch() for a link
    demo.block_thread()
