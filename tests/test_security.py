"""Secure defaults: local only and no share link unless asked, no files served beyond the app's own assets, no
tracebacks to clients, a bounded queue, and a Gradio with the 2025-2026 advisories fixed.

The no-traceback and model-allowlist checks of the page live in test_app.py (internal errors, switching models).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from demo import AppConfig, build_demo
from demo.models import AppModels, LazyFillMask, ModelHolder

pytest_plugins = ["fixtures_ui"]

ROOT = Path(__file__).resolve().parent.parent
MIN_GRADIO = (6, 22)
SECRET_PATHS = ["/file=/etc/passwd", "/file=app.py", "/gradio_api/file=/etc/passwd", "/gradio_api/file=app.py",
                f"/gradio_api/file={ROOT / 'app.py'}", "/gradio_api/file/app.py", "/gradio_api/file=../../etc/passwd",
                "/gradio_api/file=%2e%2e/%2e%2e/etc/passwd", "/static/../app.py", "/assets/../../app.py",
                "/gradio_api/file=~/.ssh/id_rsa", f"/gradio_api/file={Path.home() / '.cache/huggingface/token'}"]


def test_defaults_serve_this_machine_only_without_a_share_link():
    config = AppConfig.from_env_and_args([], {})
    kwargs = config.launch_kwargs()
    assert kwargs["server_name"] == "127.0.0.1" and kwargs["share"] is False and kwargs["show_error"] is False


def test_other_machines_are_served_only_when_the_host_asks():
    assert AppConfig.from_env_and_args([], {"GRADIO_SERVER_NAME": "0.0.0.0"}).host == "0.0.0.0"  # as on Spaces
    assert AppConfig.from_env_and_args(["--host", "0.0.0.0"], {}).host == "0.0.0.0"


@pytest.mark.parametrize("path", SECRET_PATHS)
def test_no_file_beyond_the_apps_assets_is_served(app, path):
    response = httpx.get(app.url.rstrip("/") + path)
    assert response.status_code in (403, 404), f"{path} answered {response.status_code}"
    assert "root:" not in response.text and "GPT-2 Playground" not in response.text


def test_the_page_itself_is_served(app):
    assert httpx.get(app.url).status_code == 200  # so the refusals above are not a dead server


def test_the_queue_is_bounded_by_the_configured_size(lm):
    models = AppModels(ModelHolder(lambda source: lm, "tiny"), LazyFillMask(lambda source: None, "bert"), ["tiny"])
    assert build_demo(AppConfig(queue_size=7), models=models)._queue.max_size == 7
    assert AppConfig().queue_size == 64


@pytest.mark.parametrize("argv", [["--queue-size", "0"], ["--queue-size", "2.5"], ["--deadline", "0"],
                                  ["--deadline", "nan"], ["--deadline", "soon"]])
def test_bad_limits_stop_with_a_usage_error_naming_them(argv, capsys):
    with pytest.raises(SystemExit):
        AppConfig.from_env_and_args(argv, {})
    err = capsys.readouterr().err
    assert f"`{argv[0][2:].replace('-', '_')}` has to be" in err


def test_every_install_path_refuses_a_gradio_without_the_advisories_fixed():
    """requirements.txt and pyproject.toml both exclude the Gradio releases before the fixes and admit the installed
    one (a loosened pin would let pip pick an old Gradio on a machine that has one)."""
    import tomllib
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    for where, specs in (("requirements.txt", lines), ("pyproject.toml", pyproject)):
        gradio = [Requirement(spec) for spec in specs if spec and Requirement(spec).name == "gradio"]
        assert len(gradio) == 1, f"{where} should name gradio once"
        allowed = gradio[0].specifier
        last_unfixed = f"{MIN_GRADIO[0]}.{MIN_GRADIO[1] - 1}.99"
        assert not allowed.contains(last_unfixed), f"{where} admits gradio {last_unfixed}"
        assert allowed.contains(version("gradio")), f"{where} refuses the installed gradio {version('gradio')}"
