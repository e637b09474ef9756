"""Running a room (issue 9): the teacher's controls, share links and the defects a first run found."""

from __future__ import annotations

import json
import urllib.request

import pytest
from ui_helpers import launched_app

from demo import AppConfig
from demo.model_panel import make_switch
from demo.models import AppModels, LazyFillMask, ModelHolder
from gpt2_core import load_model

pytest_plugins = ["fixtures_ui"]


# ---- the teacher's controls -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, env, allowed", [
    ([], {}, True),  # 127.0.0.1: the teacher's own machine
    (["--host", "0.0.0.0"], {}, False),  # serving a room
    ([], {"GRADIO_SERVER_NAME": "0.0.0.0"}, False),  # Hugging Face Spaces
    (["--host", "0.0.0.0", "--allow-model-switch"], {}, True),
    ([], {"GRADIO_SERVER_NAME": "0.0.0.0", "GPT2_ALLOW_MODEL_SWITCH": "1"}, True),
    (["--no-allow-model-switch"], {}, False),
    ([], {"GPT2_ALLOW_MODEL_SWITCH": "0"}, False),
])
def test_model_switching_is_on_for_this_machine_and_off_for_a_room(argv, env, allowed):
    assert AppConfig.from_env_and_args(argv, env).model_switch_allowed is allowed


def test_a_bad_allow_model_switch_value_is_a_usage_error():
    with pytest.raises(SystemExit):
        AppConfig.from_env_and_args([], {"GPT2_ALLOW_MODEL_SWITCH": "perhaps"})


def page_elem_ids(url: str) -> set[str]:
    with urllib.request.urlopen(url + "config") as response:
        config = json.load(response)
    return {c["props"].get("elem_id") for c in config["components"]}


@pytest.mark.parametrize("fields, present", [
    (dict(host="127.0.0.1"), True),
    (dict(host="0.0.0.0"), False),
    (dict(host="0.0.0.0", allow_model_switch=True), True),
    (dict(host="127.0.0.1", allow_model_switch=False), False),
])
def test_the_page_has_a_model_switcher_only_where_allowed(tiny_checkpoint, tiny_bert, fields, present):
    with launched_app(tiny_checkpoint, tiny_bert, **fields) as app:  # served on 127.0.0.1 whatever `host` says
        ids = page_elem_ids(app.url)
    assert "model-info" in ids  # the model serving is always shown
    assert ("model-choice" in ids) is present and ("load-model" in ids) is present


def test_a_failed_switch_says_the_previous_model_still_serves_and_resets_the_picker(tiny_checkpoint):
    holder = ModelHolder(lambda name: load_model(tiny_checkpoint if name == "gpt2" else "/nowhere/" + name,
                                                 device="cpu"), "gpt2")
    try:
        models = AppModels(holder, LazyFillMask(lambda s: None, "bert"), choices=["gpt2", "distilgpt2"])
        _, info, status, picker = make_switch(models)("distilgpt2", progress=lambda *a, **k: None)
        assert "Could not load **distilgpt2**" in status and "still serving" in status
        assert picker.value == "gpt2"  # back to what serves
        assert holder.current is not None and holder.source == "gpt2"
    finally:
        holder.close()
