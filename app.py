"""GPT-2 Playground: `python app.py` serves the browser demo at http://127.0.0.1:7860 (flags: `python app.py -h`).

On Hugging Face Spaces environment variables choose the model and the address (see demo/config.py).
`demo` is module-level for `gradio app.py` (reload mode); imported that way, only environment variables apply.
"""

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

# `gradio app.py` (reload mode) would watch this whole folder, .venv's thousands of files included, and keep a core
# busy: watch the project's own code instead (before gradio is imported, which reads this once). Edits to this file
# itself need a restart.
if os.environ.get("GRADIO_WATCH_DIRS"):
    os.environ["GRADIO_WATCH_DIRS"] = ",".join(str(Path(__file__).resolve().parent / d) for d in ("demo", "gpt2_core"))

# Gradio keeps its copies of uploads and downloads in a cache folder shared by every app on the machine, and never
# removes uploads: unless the host chose a folder, this app's go in one of its own, removed when the app stops
if not os.environ.get("GRADIO_TEMP_DIR"):
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="gpt2-playground-gradio-")
    atexit.register(shutil.rmtree, os.environ["GRADIO_TEMP_DIR"], ignore_errors=True)

if __name__ == "__main__":
    # From here on a stop runs the clean-up (atexit above, demo.close below), however early it comes: a container's
    # stop (SIGTERM) ends the app as Ctrl+C does, where its default would kill it on the spot, and SIGINT always
    # does: a shell starts background jobs (`python app.py &` in a script) with it ignored, and the app would not hear
    # `kill -INT` (nor would a test runner's child of such a job)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)

from demo import AppConfig, build_demo, launch_options, startup_message, use_cpu_threads  # noqa: E402
from gpt2_core.generate.compiled import keep_compiled_graphs  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests

# The CPU's fast path compiles the decode step in the background at each start: its graphs kept in the user's cache
# folder, not the temp directory a reboot may empty, halve the next start's wait for it (README, Performance)
keep_compiled_graphs()
config = AppConfig.from_env_and_args(sys.argv[1:] if __name__ == "__main__" else [])
use_cpu_threads(config)  # before any model loads or compiles (Inductor's CPU graphs keep the count they saw)
demo = build_demo(config)

if __name__ == "__main__":
    try:
        demo.launch(**config.launch_kwargs(), **launch_options(), quiet=True, prevent_thread_lock=True)
        if demo.local_url:  # not when reload mode re-runs this file (it serves nothing then)
            print(startup_message(demo, config), flush=True)  # Gradio's own would suggest editing launch() for a link
        demo.block_thread()  # until Ctrl+C or SIGTERM
    except KeyboardInterrupt:  # a stop before block_thread listened for it
        pass
    finally:
        demo.close()  # a training run ends and the app's temporary files go
