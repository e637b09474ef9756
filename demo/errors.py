"""How errors reach the page and API clients: our own messages as gr.Error, anything else as a generic one.

A ValueError from gpt2_core names the parameter and its range ("`top_k` has to be an integer in [0, 50257], but
is -5"), and a missing model names the fix; both are meant for the user. Running out of device memory ends only the
request it hit: its user is told to ask for less or try again, and the host's log says so. Any other exception is a
bug or an accident: it is logged here with its traceback, and the browser gets a short generic message.
Messages are HTML-escaped (& < >), since the page's error toast renders HTML and a message may quote the user's text.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from demo.i18n import tr
from demo.models import ModelBusyError
from gpt2_core import ModelUnavailableError, UnsafeCheckpointError
from gpt2_core.lm import DeviceOutOfMemoryError

log = logging.getLogger(__name__)

GENERIC_MESSAGE = ("Something went wrong on the server, sorry. Please try again; if it keeps happening, "  # i18n: key
                   "tell the host.")
USER_ERRORS = (ValueError, ModelUnavailableError, UnsafeCheckpointError, ModelBusyError)


def as_text(message: str) -> str:
    """A message for Gradio's error toast, which renders HTML: the user's own text in it (a sentence, a value) must
    show as typed, never become an element. Quotes stay, so API clients read values as gpt2_core wrote them."""
    return html.escape(message, quote=False)


def markdown_text(text: str) -> str:
    """Text for a gr.Markdown that shows as written (a user's sentence, a message), never as formatting."""
    return "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|~" else c for c in text)


@contextmanager
def user_facing_errors() -> Iterator[None]:
    try:
        yield
    except gr.Error:
        raise
    except DeviceOutOfMemoryError as e:
        log.warning("request ended: %s", e)
        raise gr.Error(tr("The server is short of memory right now: {why}.", why=as_text(str(e))),
                       print_exception=False) from None
    except USER_ERRORS as e:
        raise gr.Error(as_text(str(e)), print_exception=False) from None
    except Exception as e:
        log.exception("request failed")
        raise gr.Error(tr(GENERIC_MESSAGE), print_exception=False) from e
