"""Coloured tokens, shared by the tabs that show why GPT-2 chose each word (Generate, Next word, Spot the machine).

Each token is coloured by its rank under the model, in GLTR's four buckets: among the model's 10 likeliest tokens at
that place (green), its 100 (yellow), its 1000 (red), or rarer (purple). A prompt is shown dimmed, uncoloured.
Selecting a token shows its details: probability, rank, and the likeliest alternatives there, before and after the
sampling settings (`details_html`).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

import gradio as gr
from gradio.i18n import I18nData

from demo.i18n import number, tables, tr
from gpt2_core.explain.distribution import Candidate

BUCKETS = [(10, "top 10"), (100, "top 100"), (1000, "top 1000"), (None, "rarer")]  # GLTR's (Gehrmann et al. 2019)
# The names are the legend's, in English (the API's categories); a page gets them in its language (`colors`)
COLORS = {"top 10": "#4ade80", "top 100": "#facc15", "top 1000": "#f87171", "rarer": "#c084fc"}
LEGEND = ("Each generated token is coloured by its **rank**: was it among GPT-2's 10 likeliest next tokens there "
          "(green), its 100 (yellow), 1000 (red), or rarer (purple)? Grey is the prompt. Click a token to see why.")  # i18n: key


def bucket(rank: int | None) -> str | None:
    """The rank's colour; None (uncoloured) for a rank not known yet: beyond the likeliest tokens a model server
    reports while it streams (gpt2_core/remote), until the finished text's ranks arrive."""
    if rank is None:
        return None
    return next(name for limit, name in BUCKETS if limit is None or rank <= limit)


def colors(legend: dict[str, str] = COLORS) -> dict[str, str]:
    """`legend` (English name -> colour; the rank buckets' by default) named in the language of the request: a view's
    `color_map`, whose names its legend shows."""
    return {tr(name): color for name, color in legend.items()}


def name_colours(tab: gr.Blocks, views: list[gr.HighlightedText]) -> None:
    """As the page opens, give its coloured texts `colors()` in the page's language, the names their values'
    categories will have (`Coloured.segments`); the API's values keep the English names."""
    def named() -> gr.HighlightedText | list[gr.HighlightedText]:
        updates = [gr.HighlightedText(color_map=colors()) for _ in views]
        return updates if len(views) > 1 else updates[0]  # (a lone output's list would be its value)

    tab.load(named, outputs=views, api_visibility="private", queue=False, show_progress="hidden")


def token_view(label: str | I18nData, elem_id: str, *, visible: bool = True, show_legend: bool = True) -> gr.HighlightedText:
    """A text shown token by token, coloured by rank bucket; `.select` gives the clicked segment's index."""
    return gr.HighlightedText(label=label, color_map=COLORS, show_legend=show_legend, show_inline_category=False,
                              combine_adjacent=False, elem_id=elem_id, elem_classes="tokens", visible=visible)


@dataclass
class TokenRow:
    """One coloured token, with what its details need."""

    text: str
    token_id: int
    rank: int | None  # None: not known yet (see `bucket`)
    prob: float
    alternatives: list[Candidate] = field(default_factory=list)  # likeliest first


@dataclass
class Coloured:
    """A text as the page shows it: the dimmed prompt's pieces, then the coloured tokens."""

    prompt: list[str] = field(default_factory=list)
    tokens: list[TokenRow] = field(default_factory=list)

    def segments(self, *, marked: bool = True) -> list[tuple[str, str | None]]:
        """gr.HighlightedText's value, each token's bucket named in the request's language (`colors`). Tokens
        without text of their own (part of a character) have no segment. `marked`: line breaks drawn as ⏎, as the
        page shows them (`line_breaks_shown`); else the tokens' own texts, which join to the text (an API's)."""
        shown = line_breaks_shown if marked else str
        return ([(p, None) for p in self.prompt if p]
                + [(shown(t.text), tr(name) if (name := bucket(t.rank)) else None) for t in self.tokens if t.text])

    def token_at(self, segment: int) -> TokenRow | None:
        """The token behind the segment the page reports as clicked; None for the prompt."""
        shown_prompt = sum(1 for p in self.prompt if p)
        shown = [t for t in self.tokens if t.text]
        i = segment - shown_prompt
        return shown[i] if 0 <= i < len(shown) else None

    def counts(self) -> dict[str, int]:
        out = {name: 0 for _, name in BUCKETS}
        for t in self.tokens:
            if t.rank is not None:
                out[bucket(t.rank)] += 1
        return out


def words(text: str) -> list[str]:
    """`text` in pieces of a word each (with the spaces before it), so that a dimmed prompt wraps like text."""
    return re.findall(r"\s*\S+|\s+", text)


def line_breaks_shown(text: str) -> str:
    """A generated token as coloured text shows it: its line breaks drawn as ⏎ before they break the line. Gradio
    draws a token that is only "\n" as a bare line break, with no coloured box: a class saw "Sample drew ⏎" and
    nothing added, and could not click GPT-2's likeliest token in many texts to see why it came."""
    breaks = text.count("\n")
    return text.replace("\n", "") + "\u23ce" * breaks + "\n" * breaks if breaks else text


def shown_token(text: str) -> str:
    """A token as a chart or table shows it: a space as ␣ and a line break as ⏎, so that " the" and "the" differ."""
    return text.replace(" ", "\u2423").replace("\n", "\u23ce").replace("\t", "\u21e5") or tr("(part of a character)")


def details_html(row: TokenRow, *, with_settings: bool, settings_note: str = "") -> str:
    """The details of one token: its probability and rank, and a table of the likeliest tokens at its place."""
    rank = (tr("rank <b>{rank}</b> ({bucket})", rank=number(row.rank), bucket=tr(bucket(row.rank))) if row.rank is not None
            else tr("rank <b>not known yet</b>: it is not among the likeliest tokens the model server reports; its exact "
                    "rank is filled in when the text ends by itself (not after Stop)"))
    head = ("<p>" + tr("<b class='tok'>{token}</b>: probability <b>{prob}</b>, {rank}.", token=html.escape(shown_token(row.text)),
                       prob=number(row.prob, ".1%"), rank=rank) + "</p>")
    label = html.escape(tr("Token details"), quote=True)
    region = f"<div class='details' tabindex='0' role='region' aria-label='{label}'>"  # i18n: not shown (markup)
    if not row.alternatives:
        return f"{region}{head}</div>"
    cols = "<th>" + tr("GPT-2's probability") + "</th>" + (f"<th>{tr('after your settings')}</th>" if with_settings else "")
    rows = []
    for c in row.alternatives:
        cut = with_settings and c.sampling_prob == 0
        chosen = " class='chosen'" if c.token_id == row.token_id else ""
        after = ""
        if with_settings:
            after = ("<td class='cut'>" + tr("cut by the settings") + "</td>" if cut  # i18n: not shown (markup)
                     else "<td class='unknown'>" + tr("not known here") + "</td>"  # i18n: not shown (markup)
                     if c.sampling_prob is None
                     else f"<td>{bar(c.sampling_prob, 'after')}</td>")
        rows.append(f"<tr{chosen}><td class='tok'>{html.escape(shown_token(c.token_text))}</td>"  # i18n: not shown (markup)
                    f"<td>{bar(c.prob, 'model')}</td>{after}</tr>")
    if with_settings and any(c.sampling_prob is None for c in row.alternatives):
        settings_note = (settings_note + " " if settings_note else "") + tr(UNKNOWN_AFTER_SETTINGS)
    note = f"<p class='note'>{html.escape(settings_note)}</p>" if settings_note else ""
    return (f"{region}{head}<table><thead><tr><th>{tr('the likeliest tokens here')}</th>{cols}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{note}</div>")


UNKNOWN_AFTER_SETTINGS = ("\"Not known here\": the model server reports only its likeliest tokens, and with these "
                          "settings the chance of drawing each depends on the rest of the vocabulary too. Greedy, a "
                          "top-k no larger than the tokens the server reports (20, unless it was started with a "
                          "higher --max-logprobs), or temperature 1 with top-k off shows it.")  # i18n: key


def bar(p: float, kind: str) -> str:  # i18n: not shown (markup: a bar and its percentage)
    return (f"<span class='bar {kind}' style='width:{max(p * 100, 0.5):.1f}%'></span>"
            f"<span class='pct'>{number(p, '.1%')}</span>")


DETAILS_CLASS = "token-details"  # the panel that shows a clicked token's details, on every tab that has one

# A token opened by a click or by the keyboard (Enter, Space) is remembered (app.py's page script runs this), so that
# the page can then keep the token in view above its details, which are pinned to the bottom of the window while the
# text runs past it (CSS below). Escape unpins the details: they go back under the text, out of the way, and the
# focus back to the token; the next token opened pins them again.
REMEMBER_CLICKED_TOKEN = """() => {
  const opened = (e) => {
    const token = e.target.closest && e.target.closest('.tokens .token');
    if (!token) return;
    window.gpt2ClickedToken = token;
    document.querySelectorAll('.token-details.unpinned').forEach((panel) => panel.classList.remove('unpinned'));
  };
  document.addEventListener('click', opened, true);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') opened(e);
    if (e.key !== 'Escape') return;
    const pinned = [...document.querySelectorAll('.token-details:not(.unpinned)')].filter((p) => p.querySelector('.details'));
    if (!pinned.length) return;
    pinned.forEach((panel) => panel.classList.add('unpinned'));
    const token = window.gpt2ClickedToken;
    if (token && token.isConnected && pinned.some((panel) => panel.contains(document.activeElement))) token.focus();
  }, true);
}"""


# Gradio makes each token of a clickable coloured text a role=button whose name is its text, so a sampled token of
# spaces only is a button with no name (axe: aria-command-name), and a screen reader says just "button"; a line break
# is drawn as ⏎ (`line_breaks_shown`), which a screen reader reads as a symbol. This names such buttons after what
# they hold, in the page's language (its <html lang>), and renames them when Gradio reuses the element (run by
# watch_page).
BLANK_WORDS = ("token: {what}", "space", "{n} spaces", "line break", "{n} line breaks", "tab", "{n} tabs",  # i18n: key
               "blank")  # i18n: key
NAME_BLANK_TOKENS = """() => {
  const words = WORDS[(document.documentElement.lang || 'en').split('-')[0].toLowerCase()] || {};
  const say = (text, n) => (words[text] || text).replace('{n}', n);
  const describe = (text) => {
    const parts = [], counts = [[/ /g, 'space', '{n} spaces'], [/[\\n\u23ce]/g, 'line break', '{n} line breaks'],
                                [/\\t/g, 'tab', '{n} tabs']];
    for (const [pattern, one, many] of counts) {
      const n = (text.match(pattern) || []).length;
      if (n) parts.push(n === 1 ? say(one) : say(many, n));
    }
    return say('token: {what}').replace('{what}', parts.join(', ') || say('blank'));
  };
  document.querySelectorAll('.token[role=button]').forEach((token) => {
    const text = token.querySelector('.text')?.textContent ?? token.textContent;
    if (text.replace(/\u23ce/g, '').trim() === '') {
      token.setAttribute('aria-label', describe(text));
      token.dataset.named = '1';
    } else if (token.dataset.named) {
      token.removeAttribute('aria-label');
      delete token.dataset.named;
    }
  });
}""".replace("WORDS", json.dumps({lang: {w: table.get(w, w) for w in BLANK_WORDS} for lang, table in tables().items()},
                                 ensure_ascii=False))


# Gradio's coloured text puts a space of its own between the tokens' elements (its template's line breaks). The
# browser may break a line at such a space, so words split into tokens broke across lines ("pre|viously", a review
# found on a projector). CSS did not stop it (nowrap and a 0 font size on the elements around such a space: Chromium
# still broke there), so this empties those spaces; each token's own spaces are inside its .text and stay (run by
# watch_page).
JOIN_TOKENS = """() => document.querySelectorAll('.tokens .textfield').forEach((field) => {
  const walker = document.createTreeWalker(field, NodeFilter.SHOW_TEXT), loose = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.data !== '' && node.data.trim() === '' && !node.parentElement.closest('.text')) loose.push(node);
  }
  loose.forEach((node) => { node.data = ''; });  // emptied, not removed: Gradio's Svelte inserts tokens beside them
})"""


# Gradio's coloured text is one stop of the Tab key (a roving tabindex: the arrow keys go from token to token), first
# at its first token, which is the prompt's, grey, with nothing to say but "that is your prompt". The stop is the token
# last focused (by a click, Tab or the arrow keys) while it holds the same text, else the first coloured one, the first
# GPT-2 chose. Every token is set at each pass: Gradio's Svelte writes a tabindex only when its own idea of it changes
# (and reuses the elements of one text for the next), so setting two tokens alone left two stops, or none.
FIRST_CHOSEN_TOKEN_STOP = """(() => {
  let focused = null, text = '';  // the token last focused, and its text then
  const place = (field) => {
    const tokens = [...field.querySelectorAll('.token[role=button]')];
    const mine = focused && tokens.includes(focused) && focused.textContent === text ? focused : null;
    const stop = mine || tokens.find((token) => token.classList.contains('highlighted')) || tokens[0];
    for (const token of tokens) {
      const wanted = token === stop ? '0' : '-1';
      if (token.getAttribute('tabindex') !== wanted) token.setAttribute('tabindex', wanted);
    }
  };
  document.addEventListener('focusin', (e) => {
    const token = e.target.closest && e.target.closest('.tokens .token[role=button]');
    if (!token) return;
    focused = token;
    text = token.textContent;
    place(token.closest('.textfield'));
  });
  return () => document.querySelectorAll('.tokens .textfield').forEach(place);
})()"""  # i18n: not shown (JavaScript)


# The page script (app.py) runs its fixes after every change to the page (the tokens' fixes above, the toasts'),
# batched to one pass a microtask: one observer for them all. (A fix's own change is a change too: the pass after it finds
# nothing left to do.)
def watch_page(*fixes: str) -> str:
    """JavaScript that runs each of `fixes` (functions) once now and once after every batch of changes to the page."""
    return """() => {
  const fixes = [FIXES];
  const run = (fix) => { try { fix(); } catch (e) { console.error(e); } };  // one failing leaves the others working
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => { queued = false; fixes.forEach(run); });
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
  fixes.forEach(run);
}""".replace("FIXES", ", ".join(fixes))


def keep_token_in_view(panel_id: str) -> str:
    """JS run after a token's details are drawn in `panel_id`: scroll just enough that the clicked token is not
    hidden under them (or above the window's top)."""
    return """() => new Promise((done) => setTimeout(() => {
  const token = window.gpt2ClickedToken, panel = document.getElementById('PANEL');
  if (token && token.isConnected && panel) {
    const t = token.getBoundingClientRect(), p = panel.getBoundingClientRect();
    if (t.bottom > p.top - 8) window.scrollBy({top: t.bottom - p.top + 16});
    else if (t.top < 0) window.scrollBy({top: t.top - 16});
  }
  done([]);
}, 80))""".replace("PANEL", panel_id)


CSS = """
/* Coloured tokens read as running text: no pills, no gaps (gr.HighlightedText draws each token as a pill), and lines
   break where words do, at a token's own space, never inside a word split into tokens ("pre|viously"): the page
   script empties Gradio's spaces between the tokens' elements (JOIN_TOKENS). */
.tokens .textfield { display: block !important; word-break: normal !important; }
.tokens .token-container, .tokens .token { display: inline !important; margin: 0 !important;
  padding: 0 !important; border-radius: 0 !important; font-size: var(--tokens-size, 20px); }
/* A clicked token's details stay in view while the text runs past the window: pinned to its bottom. (Gradio's
   container hides its overflow, which would make it the sticky panel's scroller; clip keeps the page the scroller.) */
.gradio-container { overflow: clip !important; }
.token-details:has(.details) { position: sticky; bottom: 0; z-index: 5;
  background: var(--background-fill-primary); border-top: 3px solid #1e3a8a; box-shadow: 0 -6px 12px rgba(0,0,0,.12);
  padding: 4px 8px !important; }
.token-details.unpinned:has(.details) { position: static; box-shadow: none; }  /* Escape: back under the text */
.token-details .details { max-height: 38vh; overflow-y: auto; }  /* it scrolls, so it takes the keyboard's focus */
.tokens .token .text { font-size: var(--tokens-size, 20px) !important; line-height: 1.5; white-space: pre-wrap !important;
  padding: 0 !important; word-break: normal !important; overflow-wrap: break-word; }
.tokens .token.highlighted { cursor: pointer; }
.tokens .token.highlighted:hover, .tokens .token.highlighted:focus { outline: 2px solid #1e3a8a; }
.tokens .text.unlabeled { color: #4b5563 !important; }
.tokens .line-break { display: block; height: 0; }
.tokens .legend-item { font-size: 15px !important; color: #111827 !important; }
.details { font-size: 20px; }
.details table { width: 100%; border-collapse: collapse; table-layout: fixed; }
.details td, .details th { padding: 2px 8px; text-align: left; border-bottom: 1px solid #e5e7eb;
  overflow-wrap: anywhere; }
.details th { overflow-wrap: normal; }  /* a heading wraps between words: "Probabilidad" never splits */
@media (max-width: 480px) { .details { font-size: 16px; } .details td, .details th { padding: 2px 3px !important; }
  .details th { font-size: 14px; } }
.details .tok { font-family: var(--font-mono); white-space: pre; }
.details td .bar { display: inline-block; height: 14px; vertical-align: middle; margin-right: 6px; max-width: 70%; }
.details td .bar.model { background: #6b7280; }
.details td .bar.after { background: #2563eb; }
.details td.cut { color: #991b1b; font-style: italic; }
.details td.unknown { color: #374151; font-style: italic; }
.details tr.chosen td { font-weight: 700; background: #eff6ff; }
.details .note { color: #374151; font-size: 18px; }
"""
