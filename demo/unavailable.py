"""What cannot be had, said where it is missing.

A tab whose feature the GPT-2 backend cannot give (attention, training or sizes from a remote model server; training
or sizes on ZeroGPU): the tab's introduction and the reason, where its controls would be. Its API endpoint, if it has
one, still exists and answers with the same reason, so a script learns why rather than that the name is unknown.

BERT (for BERT vs GPT-2 and Inside) loads on first use, so whether it can be had is told cheaply at page load
(`bert_missing`): its folder or its Hugging Face cache entry is looked up, never its weights loaded, and a load that
already failed is remembered (`LazyFillMask.error`). Messages are plain text with commands and paths in backticks,
drawn as code by `as_markdown` and `as_html`.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from demo.api import refusal
from demo.config import AppConfig
from demo.errors import as_text, in_page_language, markdown_text
from demo.i18n import T, tables, tr
from demo.links import TabParts
from demo.models import AppModels
from gpt2_core.bert import fill_mask

BERT_DEFAULT = AppConfig.bert_model  # the Hub's BERT, as the app loads it unless told otherwise
BERT_FILES = ", ".join(fill_mask.BERT_FILES)
# gpt2_core's message for a Hub model neither cached nor reachable: its reason is the Hub library's own English
UNREACHABLE = re.compile(r"model '(?P<repo>[^']+)' is not in the Hugging Face cache here .* cannot be reached from this "
                         r"machine \(.*", re.DOTALL)
# The line in place of a tab's controls, by where the app runs (`here`, as app.py names it)
NOT_AVAILABLE = {"on ZeroGPU": "Not available on ZeroGPU:",  # i18n: key
                 "with this model server": "Not available with this model server:"}  # i18n: key


def unavailable_tab(intro: str, reason: str, *, elem_id: str, api_name: str | None = None,
                    api_inputs: dict[str, type] | None = None,
                    here: str = "with this model server") -> TabParts:  # i18n: key
    """The tab's introduction, then "Not available `here`:" and the reason (`here`: "on ZeroGPU", say).
    The API's refusal stays English: scripts send no language."""
    with gr.Blocks() as tab:
        gr.Markdown(translated(intro))
        line = gr.Markdown(not_available(reason, here), elem_id=elem_id)  # as built: English
        tab.load(lambda: not_available(reason, here), outputs=line, api_visibility="private", queue=False,
                 show_progress="hidden")  # in the page's language as it opens
        if api_name is not None:  # the endpoint is there, with the real one's parameters, and says why it fails
            message = f"{api_name} is not available {here}: {reason}"  # i18n: not shown (the API's refusal, for scripts)
            gr.api(refusal(api_name, api_inputs or {}, as_text(message)), api_name=api_name)
    return TabParts(tab, {})


def not_available(reason: str, here: str) -> str:
    """The line, in Markdown, that a tab shows in place of its controls (and the lesson in place of its button), in
    the language of the request being served: `here` is one of NOT_AVAILABLE's, and a reason the tables hold
    (gpt2_core's fixed reasons for remote mode and ZeroGPU) is translated too; any other shows as written. Written
    per request, not marked for the browser: the line is two texts, and Gradio's page translates one marker of a
    text (the second showed raw)."""
    in_tables = all(reason in table for table in tables().values())
    return "**" + tr(NOT_AVAILABLE[here]) + "** " + (tr(reason) if in_tables else markdown_text(reason))


def translated(text, otherwise=lambda text: text):
    """`text` as a key the browser translates if every table has it (a text already marked, or one the tables
    lack, as `otherwise` gives it)."""
    if isinstance(text, str) and all(text in table for table in tables().values()):
        return T(text)
    return otherwise(text)


@dataclass(frozen=True)
class Missing:
    """Why BERT cannot be had (`problem`) and what would fix it (`fix`, empty when the problem says it or when a
    visitor cannot act on it). Plain text; commands and paths in backticks."""

    problem: str
    fix: str = ""

    @property
    def text(self) -> str:
        return f"{self.problem} {self.fix}".strip()


def bert_missing(models: AppModels) -> Missing | None:
    """Why BERT cannot be had, known without loading it; None when it is loaded or may well load.

    Missing: a local folder that does not exist; a Hub id not in the Hugging Face cache while the Hub may not be asked
    (HF_HUB_OFFLINE); or a load that failed last time (it is tried again on the next use, which clears this).
    A public page is told that BERT is missing, never this host's paths or errors.
    """
    bert = models.bert
    if bert.loaded:
        return None
    missing = _local_folder_missing(str(bert.source)) or _hub_offline(str(bert.source)) or _recorded(bert.error)
    if missing is not None and models.public:
        return Missing(tr("BERT could not be loaded on this server."))
    return missing


def _local_folder_missing(source: str) -> Missing | None:
    path = Path(source).expanduser()
    if path.is_dir() or not (path.exists() or source.startswith((".", "/", "~"))):
        return None  # a folder (the loader checks its files), or a Hub id
    problem = (tr("BERT's folder `{source}` is not a folder.", source=source) if path.exists()
               else tr("BERT's folder `{source}` does not exist.", source=source))
    return Missing(problem, tr("Fix: put BERT's files there ({files}), or fetch BERT with `python -m gpt2_core download "
                               "{bert}` and start the app without `--bert-model`.", files=BERT_FILES, bert=BERT_DEFAULT))


def _recorded(error: str | None) -> Missing | None:
    """The failed load's reason: the Hub unreachable told as _hub_offline tells it (not the Hub library's English
    reason inside it); gpt2_core's other messages name BERT's files and their fix (in the page's language where
    demo/errors.py has them)."""
    if error is None:
        return None
    if unreachable := UNREACHABLE.fullmatch(error):
        return Missing(tr("BERT (`{repo}`) is not in this machine's Hugging Face cache, and the Hugging Face Hub "
                          "cannot be reached from here.", repo=unreachable["repo"]), _copy_the_cache(unreachable["repo"]))
    return Missing(in_page_language(error))


def _hub_offline(repo_id: str) -> Missing | None:
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return None  # the first use downloads it
    for weights in ("model.safetensors", "model.safetensors.index.json"):
        if isinstance(try_to_load_from_cache(repo_id, weights), str):
            return None
    return Missing(tr("BERT (`{repo}`) is not in this machine's Hugging Face cache, and the app may not download it "
                      "(`HF_HUB_OFFLINE` is set).", repo=repo_id),
                   _copy_the_cache(repo_id))


def _copy_the_cache(repo_id: str) -> str:
    return (tr("Fix: on a machine that reaches the Hugging Face Hub, run `python -m gpt2_core download {repo}`, then "
               "copy its cache folder (HF_HOME, by default `~/.cache/huggingface`) here.", repo=repo_id) + " "
            + tr("Or start the app with `--bert-model DIR`, a folder holding {files}.", files=BERT_FILES))


def _pieces(text: str) -> list[str]:
    """`text` split at its backticks: even pieces are prose, odd ones code (an unpaired backtick stays prose)."""
    pieces = text.split("`")
    if len(pieces) % 2 == 0:
        pieces[-2:] = ["`".join(pieces[-2:])]
    return pieces


def as_markdown(text: str) -> str:
    """A message for gr.Markdown: its backticked parts as code, the rest shown as written (never formatting)."""
    return "".join(f"`{p}`" if i % 2 else markdown_text(p) for i, p in enumerate(_pieces(text)))


def as_html(text: str) -> str:
    """A message for gr.HTML: its backticked parts in <code>, everything escaped."""
    return "".join(f"<code>{html.escape(p, quote=False)}</code>" if i % 2 else html.escape(p, quote=False)
                   for i, p in enumerate(_pieces(text)))
