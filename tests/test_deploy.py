"""deploy/ agrees with the app: what compose.yaml, the Dockerfile and the Spaces card name exists, and the sticky
sessions Gradio's queue needs are on. (Docker and a GPU are not available where the tests run; the remote mode itself
is tested against a real vLLM in test_vllm.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from huggingface_hub import SpaceHardware

from demo.config import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_app_replicas_point_at_the_vllm_service_with_variables_the_app_reads():
    services = compose()["services"]
    app, vllm = services["app"], services["vllm"]
    help_text = build_parser({}).format_help()
    for variable in app["environment"]:
        if variable.startswith("GPT2_"):
            assert variable in help_text, f"{variable} is not a setting of app.py"
    host = app["environment"]["GPT2_BACKEND"].split("//")[1].split(":")[0]
    assert host == "vllm" and "vllm" in app["depends_on"]
    served = next(a.split("=", 1)[1] for a in vllm["command"] if a.startswith("--served-model-name="))
    assert app["environment"]["GPT2_MODEL"] == served  # the name the app sends and loads its tokenizer by
    assert "--max-logprobs=100" in vllm["command"]


def test_the_balancer_keeps_each_browser_on_one_replica():
    labels = compose()["services"]["app"]["labels"]
    assert "traefik.http.services.playground.loadbalancer.sticky.cookie=true" in labels
    port = next(label.split("=")[1] for label in labels if label.endswith(".server.port=7860") or ".server.port=" in label)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f"GRADIO_SERVER_PORT={port}" in dockerfile and "GRADIO_SERVER_NAME=0.0.0.0" in dockerfile


def test_the_dockerfile_copies_what_exists():
    for source in re.findall(r"^COPY (\S+)", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"deploy/Dockerfile copies {source}, which is not in the project"


def test_the_spaces_card_suggests_real_hardware_and_names_settings_the_app_reads():
    card = (DEPLOY / "spaces-README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["sdk"] == "gradio" and (ROOT / front["app_file"]).is_file()
    import gradio

    # the Space builds the Gradio and Python this project is tested with (the app's README card says the same)
    assert front["sdk_version"] == gradio.__version__ == yaml.safe_load((ROOT / "README.md").read_text().split("---")[1])[
        "sdk_version"]
    assert front["python_version"] == "3.11"
    assert front["suggested_hardware"] == SpaceHardware.ZERO_A10G  # ZeroGPU, what a free account may host
    assert f"`suggested_hardware: {SpaceHardware.CPU_BASIC.value}`" in card  # the other recipe
    help_text = build_parser({}).format_help()
    for variable in set(re.findall(r"\bGPT2_[A-Z_]+", card)) - {"GPT2_BACKEND_API_KEY"}:  # the key: never a flag
        assert variable in help_text, f"{variable} is not a setting of app.py"
