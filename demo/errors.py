"""How errors reach the page and API clients: our own messages as gr.Error, anything else as a generic one.

A ValueError from gpt2_core names the parameter and its range ("`top_k` has to be an integer in [0, 50257], but
is -5"), and a missing model names the fix; both are meant for the user. Running out of device memory ends only the
request it hit: its user is told to ask for less or try again, and the host's log says so. Any other exception is a
bug or an accident: it is logged here with its traceback, and the browser gets a short generic message.
Messages are HTML-escaped (& < >), since the page's error toast renders HTML and a message may quote the user's text.
gpt2_core writes English; a ValueError that reads as one of ENGINE_MESSAGES is shown in the page's language, its
parameter name and values as gpt2_core wrote them (API clients, and messages not in the list, get the English).
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache

import gradio as gr

from demo.i18n import SOURCE, language, tables, tr, written_as
from demo.models import ModelBusyError
from gpt2_core import ModelUnavailableError, UnsafeCheckpointError
from gpt2_core.lm import DeviceOutOfMemoryError

log = logging.getLogger(__name__)

GENERIC_MESSAGE = ("Something went wrong on the server, sorry. Please try again; if it keeps happening, "  # i18n: key
                   "tell the host.")
USER_ERRORS = (ValueError, ModelUnavailableError, UnsafeCheckpointError, ModelBusyError)

# gpt2_core's ValueErrors that a page's user can cause (a setting out of range, a text too long or empty), as English
# templates: the keys of demo/locales/errors.json. A {field} stands for what gpt2_core wrote there (a parameter's name,
# a range, the value given), which the translation keeps as it is. The first template a message reads as is used.
# A field may not be named `text` (tr's own parameter).
ENGINE_MESSAGES = (
    "`{name}` has to be an integer in [{low}, {high}], but is {value}",  # i18n: key
    "`seed` has to be -1 (random) or an integer in [0, {high}], but is {value}",  # i18n: key
    "`{name}` has to be a finite number in [{low}, {high}], but is {value}",  # i18n: key
    "`{name}` has to be a finite number in ({low}, {high}], but is {value}",  # i18n: key
    "`{name}` has to be an integer from 1 to {high} for {model}, but is {value}",  # i18n: key
    "`stop` has to be a string or a list of at most {count} non-empty strings of at most {chars} characters, "  # i18n: key
    "but is {value}",  # i18n: key
    "`{name}` has to be a string, but is {kind}",  # i18n: key
    "`{name}` has to be valid Unicode text, but has a lone surrogate ({value}) at character {position}",  # i18n: key
    "`{name}` has to be at most {limit} characters long, but has {length}",  # i18n: key
    "`{name}` has to be at most {limit} characters, but has {length}",  # i18n: key
    "`{name}` has to be at most {limit} tokens long, but has {length}",  # i18n: key
    "`{name}` has to be at most {limit} tokens long for BERT to show its attention, but has {length}",  # i18n: key
    "`{name}` has to be 1 to {limit} tokens long to show its attention, but has {length}",  # i18n: key
    "`{name}` has to be 1 to {limit} tokens long to read it through the layers, but has {length}",  # i18n: key
    "`{name}` has to be a non-empty string",  # i18n: key
    "`{name}` has to have at least one token to measure surprise",  # i18n: key
    "`{name}` has to be a string of one token, or None, but is {value}",  # i18n: key
    "`{name}` has to be exactly one token of the vocabulary, but is empty",  # i18n: key
    "`{name}` has to be exactly one token of the vocabulary, but {value} is {count} tokens ({pieces}): "  # i18n: key
    "try its first token, {first}",  # i18n: key
    "`{name}` has to be exactly one token of the vocabulary, but {value} is {count} tokens ({pieces})",  # i18n: key
    "`{name}` has to contain exactly one blank, written ___ or [MASK], but has {count}: {sentence}",  # i18n: key
    "`{name}` has to contain exactly one blank, but BERT sees {count}",  # i18n: key
    "`{name}` is too short to train on: it has {length} tokens, and needs at least {need} for a context of "  # i18n: key
    "{context} (about {chars} characters)",  # i18n: key
    "`{name}` is too short to train on: it has {length} tokens, and needs at least {need} for a context of "  # i18n: key
    "{context}",  # i18n: key
    "`{name}` has to be at most {limit} with this model here (the samples it decodes at once, as its memory "  # i18n: key
    "allows), but is {value}",  # i18n: key
    # gpt2_core.checkpoint's model that cannot be had offline (BERT's reason on the comparison, a model to switch to)
    "model {repo} is not in the Hugging Face cache here ({cache}) and the Hugging Face Hub cannot be reached from "  # i18n: key
    "this machine ({why}). Fix: on a machine that reaches the Hub, run `python -m gpt2_core download {source}`, "  # i18n: key
    "then copy its cache folder (HF_HOME, by default ~/.cache/huggingface) to this machine or point HF_HOME at "  # i18n: key
    "the copy; or pass a local directory holding {files}.",  # i18n: key
)
FIELD_PATTERN = {"name": r"\w+"}  # what a field of ENGINE_MESSAGES may hold, where narrower than any text


def as_text(message: str) -> str:
    """A message for Gradio's error toast, which renders HTML: the user's own text in it (a sentence, a value) must
    show as typed, never become an element. Quotes stay, so API clients read values as gpt2_core wrote them."""
    return html.escape(message, quote=False)


def markdown_text(text: str) -> str:
    """Text for a gr.Markdown that shows as written (a user's sentence, a message), never as formatting."""
    return "".join("\\" + c if c in "\\`*_{}[]<>()#+-.!|~" else c for c in text)


NAMED = re.compile(r"`[A-Za-z_][A-Za-z0-9_]*`")  # the parameter a message begins with: "`temperature` has to be ..."


def message_markdown(message: str) -> str:
    """A message for a gr.Markdown: as written (markdown_text: the text it quotes is never formatting), except the
    parameter's name it begins with in backticks, drawn as code as the run state and the toasts draw it."""
    name = NAMED.match(message)
    return markdown_text(message) if name is None else name[0] + markdown_text(message[name.end():])


def in_page_language(message: str, templates: Iterable[str] = ENGINE_MESSAGES) -> str:
    """`message` (English) in the language of the request being served, if it reads as one of `templates` (whose
    fields keep what the message has there); else as it is."""
    if language() == SOURCE:
        return message
    for template, pattern in template_patterns(tuple(templates)):
        if found := pattern.fullmatch(message):
            return tr(template, **fields_of(found))
    return message


def fields_of(found: re.Match) -> dict[str, str]:
    """The fields of a message that matched a template's pattern, each size in the request's language."""
    return {field: size_text(value) for field, value in found.groupdict().items()}


SIZE = re.compile(r"(\d[\d,]*(?:\.\d+)?) (GB|MB)")  # as gpt2_core.memory.readable_bytes writes one


def size_text(english: str) -> str:
    """A size as gpt2_core writes it ("1.57 GB", "497 MB") in the request's language (1,57 GB; 1,57 Go); any other
    text as it is."""
    if not (found := SIZE.fullmatch(english)):
        return english
    figure = written_as(found[1], language())
    return tr("{n} GB", n=figure) if found[2] == "GB" else tr("{n} MB", n=figure)


@cache
def template_patterns(templates: tuple[str, ...]) -> tuple[tuple[str, re.Pattern], ...]:
    """Each template with the pattern of the messages it writes: its text as written, a {field} for any text (but
    {name}, a parameter's name, for a word only)."""
    patterns = []
    for template in templates:
        parts = re.split(r"\{(\w+)\}", template)  # text, field, text, field, ..., text
        pattern = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>{FIELD_PATTERN.get(part, '.+?')})"
                          for i, part in enumerate(parts))
        patterns.append((template, re.compile(pattern, re.DOTALL)))
    return tuple(patterns)


# A toast's title: Gradio 6.31's page writes the kind of message in English ("Error", "Info") above every message,
# whatever gr.Error's `title` says. The page's JavaScript (PAGE_JS in demo/app.py) puts the page's language there.
TOAST_TITLES = ("Error", "Warning", "Info", "Success")  # i18n: key


TOAST_TITLES_JS = """() => {
  const shown = TITLES[(document.documentElement.lang || 'en').split('-')[0].toLowerCase()];
  if (!shown) return;
  for (const span of document.querySelectorAll('[data-testid=toast-body] .toast-title-row > span')) {
    const text = span.firstChild;  // the title; a count of messages ("(3)") follows in an element of its own
    if (!text || text.nodeType !== Node.TEXT_NODE) continue;
    const english = span.dataset.title || text.data.trim();
    if (!(english in shown)) continue;
    span.dataset.title = english;
    if (text.data.trim() !== shown[english]) text.data = text.data.replace(text.data.trim(), shown[english]);
  }
}"""  # i18n: not shown (JavaScript)


# A message begins with its parameter's name in backticks ("`temperature` has to be ..."), which the run state's
# Markdown draws as code; a toast draws its message as plain text, backticks and all. The API's clients read the same
# message, so the page draws it: the name a toast's message begins with becomes code (a fix tokens.watch_page runs),
# and the rest stays as written (it may quote the user's text, backticks and all).
TOAST_CODE_JS = """() => {
  for (const box of document.querySelectorAll('[data-testid=toast-text]')) {
    const text = box.textContent;
    const name = /^`([A-Za-z_][A-Za-z0-9_]*)`/.exec(text);  // the parameter a message begins with
    if (box.children.length || !name) continue;  // done already, or nothing to draw
    const code = document.createElement('code');
    code.textContent = name[1];
    box.replaceChildren(code, document.createTextNode(text.slice(name[0].length)));  // the rest (the text it quotes) as is
  }
}"""  # i18n: not shown (JavaScript)


def toast_titles_js() -> str:
    """JavaScript that writes each toast's title in the page's language (its <html lang>): a fix the page runs after
    every change to it (tokens.watch_page), so a toast has its title as it appears."""
    titles = {lang: {title: table.get(title, title) for title in TOAST_TITLES} for lang, table in tables().items()}
    return TOAST_TITLES_JS.replace("TITLES", json.dumps(titles, ensure_ascii=False), 1)


def page_error(message: str) -> gr.Error:
    """A gr.Error titled in the page's language (the title Gradio's API carries; the page's toast: TOAST_TITLES)."""
    return gr.Error(message, title=tr("Error"), print_exception=False)


def page_info(message: str) -> None:
    """gr.Info's toast, titled in the page's language (as page_error)."""
    gr.Info(message, title=tr("Info"))


@contextmanager
def user_facing_errors() -> Iterator[None]:
    try:
        yield
    except gr.Error:
        raise
    except DeviceOutOfMemoryError as e:
        log.warning("request ended: %s", e)
        raise page_error(tr("The server is short of memory right now: {why}.", why=as_text(str(e)))) from None
    except ValueError as e:  # a value the user gave: gpt2_core's message, in the page's language where it has one
        raise page_error(as_text(in_page_language(str(e)))) from None
    except USER_ERRORS as e:
        raise page_error(as_text(in_page_language(str(e)))) from None
    except Exception as e:
        log.exception("request failed")
        raise page_error(tr(GENERIC_MESSAGE)) from e
