"""The app's temporary files in one folder: downloads (exports.py) and training runs (training.py).

The folder is made on first use (a page that never downloads or trains leaves nothing behind) and removed when the
app closes (`Playground.close`, which Ctrl+C and SIGTERM reach through app.py) or, failing that, when the process
exits. Gradio's own copies of uploads and returned files are its cache's, cleared by `delete_cache` (app.py).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from pathlib import Path

PREFIX = "gpt2-playground-"


class Workspace:
    def __init__(self) -> None:
        self._root: Path | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    def folder(self, name: str) -> Path:
        """`name`'s folder inside the workspace, made (with the workspace) if it is not there yet."""
        with self._lock:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix=PREFIX))
                # at interpreter exit too, if the app was never closed (a script, a crash in a test)
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._root, ignore_errors=True)
            folder = self._root / name
            folder.mkdir(exist_ok=True)
            return folder

    @property
    def root(self) -> Path | None:
        """The folder, once something was written (None before)."""
        return self._root

    def remove(self) -> None:
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()  # runs once: rmtree, then it is dead
            self._root, self._finalizer = None, None
