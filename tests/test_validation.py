"""Every user-facing parameter is checked at the boundary: a bad value raises ValueError naming it and its range."""

import math

import pytest
import torch

from gpt2_core import SamplingParams
from gpt2_core.devices import resolve_device, resolve_dtype

BAD = [
    ("max_new_tokens", 0), ("max_new_tokens", -1), ("max_new_tokens", 3.7), ("max_new_tokens", 10**9),
    ("max_new_tokens", 1024), ("max_new_tokens", True), ("max_new_tokens", "10"),
    ("temperature", -1), ("temperature", math.nan), ("temperature", math.inf), ("temperature", 2.5),
    ("temperature", "hot"),
    ("top_k", -5), ("top_k", 2.5), ("top_k", 10**6), ("top_k", None),
    ("top_p", 0), ("top_p", 1.5), ("top_p", math.nan), ("top_p", -0.1),
    ("repetition_penalty", 0), ("repetition_penalty", -1.0), ("repetition_penalty", math.inf),
    ("repetition_penalty", math.nan),
    ("seed", 2**64), ("seed", 1.5), ("seed", "abc"), ("seed", -5),
    ("num_samples", 0), ("num_samples", 9), ("num_samples", 2.5),
    ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""]), ("stop", [3]), ("stop", ["x" * 201]),
    ("stop", 5), ("stop", {"a": 1}), ("stop", b"\n"),  # (a TypeError; the dict's keys taken; its bytes as numbers)
]


@pytest.mark.parametrize("name,value", BAD, ids=[f"{n}={v!r:.20}" for n, v in BAD])
def test_bad_setting_names_the_parameter_and_range(name, value):
    with pytest.raises(ValueError, match=f"`{name}` has to be") as err:
        SamplingParams(**{name: value})
    assert "]" in str(err.value) or "at most" in str(err.value)  # the allowed range is spelled out


@pytest.mark.parametrize("name,value", BAD[:12], ids=[f"{n}={v!r:.20}" for n, v in BAD[:12]])
def test_bad_setting_is_refused_before_any_work(lm, name, value):
    steps = lm.engine.steps
    with pytest.raises(ValueError, match=name):
        lm.generate("hello", **{name: value})
    assert lm.engine.steps == steps


@pytest.mark.parametrize("deadline_s", [math.nan, 0, -1, "10", None, 10**6])
def test_a_bad_deadline_is_refused_by_name(lm, deadline_s):
    """NaN turned the deadline off, 0 ended every request at once, "10" and None were TypeErrors."""
    with pytest.raises(ValueError, match=r"`deadline_s` has to be a finite number in \(0, 86400\], but is "):
        lm.generate("hello", max_new_tokens=2, deadline_s=deadline_s)


@pytest.mark.parametrize("max_batch", [0, -3, 1.5, "4", 10**6])
def test_a_bad_max_batch_is_refused_by_name_before_loading(max_batch):
    """0 and -3 became 1; 1.5 was a limit of 1.5 samples; "4" a TypeError."""
    from gpt2_core import load_model

    with pytest.raises(ValueError, match=r"`max_batch` has to be an integer in \[1, 1024\], but is "):
        load_model("no/such-model-here", max_batch=max_batch)


def test_message_shows_the_value():
    with pytest.raises(ValueError) as err:
        SamplingParams(top_k=-5)
    assert str(err.value) == "`top_k` has to be an integer in [0, 50257], but is -5"


@pytest.mark.parametrize("settings", [dict(temperature=0), dict(temperature=2.0), dict(temperature=1e-9),
                                      dict(top_k=0), dict(top_p=1.0), dict(top_p=1e-6), dict(max_new_tokens=1023),
                                      dict(max_new_tokens=64.0), dict(seed=0), dict(seed=2**63 - 1), dict(seed=None),
                                      dict(num_samples=8), dict(stop="\n\n"), dict(repetition_penalty=1.3)])
def test_edge_values_inside_the_range_are_accepted(settings):
    SamplingParams(**settings)


def test_integral_floats_from_sliders_become_ints():
    s = SamplingParams(max_new_tokens=64.0, top_k=40.0, num_samples=2.0)
    assert (s.max_new_tokens, s.top_k, s.num_samples) == (64, 40, 2)
    assert all(type(v) is int for v in (s.max_new_tokens, s.top_k, s.num_samples))


def test_prompt_must_be_text(lm):
    with pytest.raises(ValueError, match="`prompt` has to be a string"):
        lm.generate(None)


def test_unknown_setting_is_refused(lm):
    with pytest.raises(TypeError, match="temprature"):
        lm.generate("x", temprature=0.5)


@pytest.mark.parametrize("k", [0, -1, 2.5, 10**7])
def test_next_token_probs_k_is_checked(lm, k):
    with pytest.raises(ValueError, match="`k` has to be"):
        lm.next_token_probs("x", k=k)


@pytest.mark.parametrize("device", ["gpu", "tpu", 3, "cuda:x"])
def test_bad_device_names_the_choices(device):
    with pytest.raises(ValueError, match="`device`"):
        resolve_device(device)


@pytest.mark.parametrize("dtype", ["fp64", "int8", "half-ish"])
def test_bad_dtype_names_the_choices(dtype):
    import torch

    with pytest.raises(ValueError, match="`dtype`"):
        resolve_dtype(dtype, torch.device("cpu"))


@pytest.mark.parametrize("source", [5, None, "", "  "])
def test_a_model_source_that_is_no_name_is_refused_by_name(source):
    from gpt2_core import load_model

    with pytest.raises(ValueError, match=r"`source` has to be a Hub id \(gpt2, distilgpt2, ...\), mini-gpt2 or a "
                                         r"folder, but is "):
        load_model(source)


@pytest.mark.parametrize("sizes", [dict(n_head=0), dict(n_layer=-1), dict(n_embd=2.5), dict(vocab_size=True)])
def test_a_config_with_no_heads_or_layers_is_refused_by_name(sizes):
    """n_head=0 was a ZeroDivisionError."""
    from gpt2_core.config import GPTConfig

    name = next(iter(sizes))
    with pytest.raises(ValueError, match=rf"`{name}` has to be an integer in \[1, 2147483647\], but is "):
        GPTConfig(**sizes)


@pytest.mark.parametrize("token_id", [-1, 2.5, "7"])
def test_token_text_of_no_token_is_refused_by_name(lm, token_id):
    """-1 was an OverflowError."""
    with pytest.raises(ValueError, match=r"`token_id` has to be a token id, an integer from 0, but is "):
        lm.token_text(token_id)
    assert lm.token_text(torch.tensor(15496)) == lm.token_text(15496) == "Hello"  # a 0-d tensor is an index
    assert lm.token_text(50300) == ""  # past the tokenizer (a padded vocabulary's): no text, as before


def test_scale_plan_of_one_name_as_a_string_says_to_give_a_list():
    """plan("mini-gpt2") planned the models 'm', 'i', 'n', ... each 'not on this machine'."""
    from gpt2_core.scale import plan

    with pytest.raises(ValueError, match=r"`sources` has to be a list of models, but is the string 'mini-gpt2': give "
                                         r"\['mini-gpt2'\]"):
        plan("mini-gpt2", budget_bytes=10**9)
