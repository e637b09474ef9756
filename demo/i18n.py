"""The page in the class's language: English, Spanish and French. GPT-2's own text stays English (it read English).

Every user-facing string in demo/ is English source text wrapped in one of two functions, and the English text is the
key of the translation tables in demo/locales/<module>.json ({"es": {english: spanish}, "fr": {...}}):

    gr.Button(T("Generate"))                      # built once for every visitor: the browser translates it
    raise gr.Error(tr("Write a prompt first."))   # written during a request: translated here, for that request

- `T(text)` marks a string for Gradio's `gr.I18n`: the page (Gradio's frontend) shows the entry for its language,
  or the English text where it has none. Use it for what the layout holds: labels, help texts, Markdown, choices.
  Such a text may not hold braces (Gradio's marker is JSON inside a string, and its reader stops at a brace), and
  a label or Markdown may hold one marker only, with plain text around it: Gradio 6.31's page translates the first
  marker of a text and shows any later one raw (tests/test_i18n.py checks the built page for this).
- `tr(text, **values)` translates at once, for the language of the request being served (its page's `?lang=`
  parameter, else its browser's Accept-Language), then fills `{name}` fields: `tr("{n} tokens", n=3)`. Outside a
  request (start-up, API-less tests) it is English; `speaking("es")` sets a language for a block of code.

Numbers are written as the page's language writes them (12,345.6 / 12.345,6 / 12 345,6; 97% / 97 %): tr does it for
a number in a field, and `number(value, spec)` for one formatted elsewhere.

Which language a page shows: the link's `lang` parameter (`?lang=es`) if it names one of LANGUAGES, else the
browser's language if it is one of them, else English. Gradio picks the browser's; LinkLanguage makes it the link's.
tests/test_i18n.py fails when a string a user can see is not in every table.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from urllib.parse import parse_qs

import gradio as gr
from gradio.context import LocalContext
from gradio.i18n import I18nData

LANGUAGES = {"en": "English", "es": "Español", "fr": "Français"}
SOURCE = "en"  # the language of the code's own strings: the tables translate from it
LOCALES = Path(__file__).parent / "locales"
_forced: ContextVar[str | None] = ContextVar("gpt2_playground_language", default=None)


@cache
def tables() -> dict[str, dict[str, str]]:
    """language -> {English text: translation}, merged from every module's file in demo/locales/."""
    merged: dict[str, dict[str, str]] = {language: {} for language in LANGUAGES if language != SOURCE}
    for path in sorted(LOCALES.glob("*.json")):
        for language, entries in json.loads(path.read_text(encoding="utf-8")).items():
            if language not in merged:
                raise ValueError(f"{path.name}: {language!r} is not one of the page's languages {sorted(merged)}")
            for english, translated in entries.items():
                if merged[language].get(english, translated) != translated:
                    raise ValueError(f"{path.name}: {english!r} has two {language} translations")
                merged[language][english] = translated
    return merged


@cache
def i18n() -> gr.I18n:
    """The tables for Gradio (`launch(i18n=...)`)."""
    return gr.I18n(**tables())


def T(text: str) -> I18nData:  # noqa: N802 (short, like gettext's _, since it wraps every label)
    """`text` as a key the browser translates: for what the layout holds, built once for every language."""
    if "{" in text or "}" in text:
        raise ValueError(f"a text translated by the browser cannot hold braces: {text!r}")
    return I18nData(text)


def tr(text: str, **values: object) -> str:
    """`text` in the language of the request being served, with `{name}` fields filled from `values`; a number in a
    field is written as that language writes numbers (`number`): tr("loss {loss:.2f}", loss=2.5) is "loss 2,50" in
    Spanish."""
    translated = tables().get(language(), {}).get(text, text)
    return NUMBERS.vformat(translated, (), values) if values else translated


# How each language writes what Python's format wrote in English (CLDR's marks): the thousands, the decimal mark, the
# space before a percent sign. Spanish groups no four-digit whole number (1234, 12.345); French groups with a narrow
# no-break space. Without this a Spanish class read "1,558M parameters" as one and a half million.
MARKS = {"es": str.maketrans({",": ".", ".": ","}), "fr": str.maketrans({",": "\u202f", ".": ","})}
PERCENT = {"es": "\u00a0%", "fr": "\u202f%"}
FOUR_DIGITS = re.compile(r"(?<![\d,])(\d),(\d{3})(?![\d,])")


def number(value: float, spec: str = ",", lang: str | None = None) -> str:
    """`value` formatted by `spec` (Python's format: ",", ".1f", ".0%") as the request's language (or `lang`) writes
    it: 12,345.6 and 97% in English, 12.345,6 and 97 % in Spanish, 12 345,6 and 97 % in French."""
    return written_as(format(value, spec), language() if lang is None else lang)


def written_as(english: str, lang: str) -> str:
    """A number as Python's format wrote it, with the marks of `lang`."""
    if lang not in MARKS:
        return english
    if lang == "es":
        english = FOUR_DIGITS.sub(r"\1\2", english)
    return english.translate(MARKS[lang]).replace("%", PERCENT[lang])


# A number as Vega and the sliders draw it ("1,558.5"), written with `lang`'s marks by written_as's tables; any other
# text as it is.
WRITTEN_AS = """(text, lang) => {
  const marks = MARKS[lang];
  if (!marks || !/^[-\\u2212]?[\\d,]*\\.?\\d+$/.test(text)) return text;
  const grouped = lang === 'es' ? text.replace(new RegExp(FOUR, 'g'), '$1$2') : text;
  return [...grouped].map((c) => marks[c] ?? c).join('');
}""".replace("MARKS", json.dumps({lang: {chr(c): mark for c, mark in table.items()} for lang, table in MARKS.items()}))
WRITTEN_AS = WRITTEN_AS.replace("FOUR", json.dumps(FOUR_DIGITS.pattern))  # i18n: not shown (JavaScript)
# Gradio's page draws some numbers with English marks whatever its language: Vega's plot axes and tooltips ("1,558.5":
# Gradio 6.31 gives Vega no locale) and the sliders' bounds ("0.01"). The page script writes each of them again, by
# the same tables as written_as: the Scale chart's axis reads "1600" and "0,5" on a Spanish page, as its table does.
DRAWN_NUMBERS = """() => {
  const lang = (document.documentElement.lang || 'en').split('-')[0], writtenAs = WRITTEN_AS;
  if (writtenAs('0.5', lang) === '0.5') return;  // English marks
  const drawn = 'svg g.role-axis-label text, #vg-tooltip-element td.value, [data-testid=min-value], [data-testid=max-value]';
  for (const label of document.querySelectorAll(drawn)) {
    // its one text node is written in place: Svelte keeps it, and writes a slider's new bound (Inside's) into it
    const node = label.firstChild;
    if (!node || node.nodeType !== Node.TEXT_NODE || label.childNodes.length !== 1) continue;
    const text = node.data;
    if (label.dataset.written === text) continue;  // already written ("0,5" would be read as English again)
    label.dataset.written = writtenAs(text, lang);
    if (node.data !== label.dataset.written) node.data = label.dataset.written;
  }
}""".replace("WRITTEN_AS", WRITTEN_AS)  # i18n: not shown (JavaScript)


class NumberFields(string.Formatter):
    """str.format, with each number in a field written as the request's language writes numbers."""

    def format_field(self, value: object, format_spec: str) -> str:
        text = format(value, format_spec)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return written_as(text, language()) if is_number else text


NUMBERS = NumberFields()


def language() -> str:
    """The language of the request being served (or the one `speaking` set), "en" outside a request."""
    if (forced := _forced.get()) is not None:
        return forced
    request = LocalContext.request.get(None)
    if request is None:
        return SOURCE
    return choose_language(dict(request.query_params), request.headers.get("accept-language", ""))


def choose_language(query: Mapping[str, str], accept_language: str) -> str:
    """The link's `lang` if the page has it, else the browser's first language the page has, else English."""
    if (asked := query.get("lang", "").strip().lower()) in LANGUAGES:
        return asked
    ranked = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = re.search(r"q=([0-9.]+)", params)
        ranked.append((-float(weight.group(1)) if weight else -1.0, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if (base := tag.split("-")[0]) in LANGUAGES:
            return base
    return SOURCE


@contextmanager
def speaking(lang: str) -> Iterator[None]:
    """Translate with `lang` inside the block, whatever the request (tests; work done for a page off its thread)."""
    if lang not in LANGUAGES:
        raise ValueError(f"`lang` has to be one of {sorted(LANGUAGES)}, but is {lang!r}")
    token = _forced.set(lang)
    try:
        yield
    finally:
        _forced.reset(token)


class LinkLanguage:
    """ASGI middleware for the page's link parameter `?lang=xx`: Gradio chooses the page's language from the
    browser's (`navigator.language`) as it starts, and has no parameter for it, so the page's HTML gets a first
    script that makes the browser's language the link's. (Gradio's own `changeLocale`, used later, leaves some labels,
    the tabs', in the old language.) Only the page itself is touched, and only for a language in LANGUAGES."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in ("", "/"):
            return await self.app(scope, receive, send)
        asked = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("lang", [""])[0].strip().lower()
        if asked not in LANGUAGES:
            return await self.app(scope, receive, send)
        script = LINK_LANGUAGE_SCRIPT.replace("LANG", asked).encode()
        start: dict = {}
        body: list[bytes] = []

        async def add_script(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                page = page.replace(b"<head>", b"<head>" + script, 1)
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, add_script)


LINK_LANGUAGE_SCRIPT = """<script>(() => { for (const [name, value] of [['language', 'LANG'], ['languages', ['LANG']]])
  Object.defineProperty(Navigator.prototype, name, {get: () => value, configurable: true}); })();</script>"""
