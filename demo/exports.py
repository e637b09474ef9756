"""Files a visitor downloads (a generation as .txt, .json or .html): written to the app's workspace, the oldest pruned.

Gradio copies a returned file into its own cache and serves that copy; the folder here only has to outlive the
event that returned the file, so it keeps the newest `keep` files. It goes with the workspace when the app closes.
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

from demo.workspace import Workspace


class Exports:
    def __init__(self, workspace: Workspace, keep: int = 200):
        self.workspace = workspace
        self.keep = keep
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self.workspace.folder("exports")

    def write(self, name: str, text: str) -> str:
        folder = self.directory / uuid.uuid4().hex  # the visitor downloads `name` itself, so the folder is unique
        folder.mkdir()
        path = folder / name
        path.write_text(text, encoding="utf-8")
        with self._lock:
            folders = sorted(self.directory.iterdir(), key=lambda p: p.stat().st_mtime)
            for old in folders[: max(0, len(folders) - self.keep)]:
                for file in old.iterdir():
                    file.unlink(missing_ok=True)
                old.rmdir()
        return str(path)


def app_version() -> str:
    """The app's version, from pyproject.toml (the app runs from its folder, not installed)."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    except OSError:
        found = None
    return found.group(1) if found else "unknown"


def app_stamp() -> dict:
    """What a download says about where it came from: the app, its version, and when (UTC)."""
    return dict(name="GPT-2 Playground", version=app_version(),
                exported_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
