"""The app's API endpoints that no page event serves as it is: plain functions, served with `gr.api`.

A page event's outputs are the page's components (coloured text, hidden states, buttons); an API client wants plain
values. So /generate, /attention and /scale are functions of their own, beside the events that draw the page,
without hidden components standing in for their inputs and outputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gradio as gr


def endpoint(fn: Callable[..., Any], *, returns: Any, api_name: str, **options: Any) -> None:
    """Serve `fn` at /`api_name`, its values raw (gpt2_core checks them, naming each parameter).

    `returns` is what it returns (or yields, for a stream): a tuple type for several outputs, one each. It is set
    here because gr.api reads the outputs from the return annotation, which `from __future__ import annotations`
    leaves a string and which a generator's `Iterator[...]` does not spell out.
    """
    fn.__annotations__["return"] = returns
    gr.api(fn, api_name=api_name, **options)


def refusal(api_name: str, parameters: dict[str, type], message: str) -> Callable[..., Any]:
    """An endpoint with `parameters` (name -> type, as the real one has them) that always fails with `message`."""
    def refuse(*_values: Any) -> None:
        raise gr.Error(message, print_exception=False)

    refuse.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=kind)
         for name, kind in parameters.items()])
    refuse.__annotations__ = dict(parameters)
    refuse.__name__ = api_name
    return refuse
