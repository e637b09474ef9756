"""The Layers tab (the logit lens): what GPT-2 would say next if it stopped after each layer.

A grid of layers x tokens (demo/lens_pictures.py): each cell is a layer's top guess for the token after its column,
coloured by its probability; a click shows that cell's 5 likeliest tokens. "Watch one word" follows one token's rank
through the layers at the chosen position (by default GPT-2's own final answer there), and the text is coloured by when
GPT-2 committed to each word: the first layer from which its top guess stayed on top. "Let GPT-2 continue" adds a
greedy continuation, so that the colouring shows a generated text. The `/layers(text, target)` API endpoint returns
the whole lens as JSON. A refused text never leaves another text's grid on the page: the refusal's message takes its
place (a refused word to watch keeps the grid, still the text's), as Generate's "Not written" does.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from demo.api import endpoint
from demo.errors import in_page_language, markdown_text, message_markdown, user_facing_errors
from demo.exports import Exports
from demo.i18n import T, tr
from demo.lens_pictures import (
    COMMIT_COLORS,
    cell_html,
    commit_colors,
    commitment_html,
    commitment_segments,
    grid_html,
    rank_chart_svg,
    rank_summary,
)
from demo.links import TabParts, copy_link
from demo.models import AppModels
from demo.save_view import model_line, save_png_button
from demo.workspace import Workspace
from gpt2_core.explain.lens import MAX_LENS_TOKENS, LogitLens
from gpt2_core.generate.settings import check_text

DEFAULT_TEXT = "The Eiffel Tower is in the city of"  # i18n: model text
TOP = 5  # guesses listed for a clicked cell
CONTINUE_TOKENS = 10  # "Let GPT-2 continue" adds at most this many greedy tokens
CONTINUE = "Let GPT-2 continue"  # i18n: key
FULL = "Grid full ({n} tokens)"  # i18n: key
SHOW_DETAILS = "() => document.getElementById('layers-details')?.scrollIntoView({block: 'nearest', behavior: 'smooth'})"
SCROLL_TO_GRID = "() => document.getElementById('layers-note')?.scrollIntoView({block: 'start', behavior: 'smooth'})"
# Cells are buttons inside the HTML: a click (or Enter, or Space) marks the cell and tells the server which one (a
# delegated listener on the component, so it keeps working when a new grid replaces the old one). The grid is one Tab
# stop: the cell in the Tab order (tabindex 0, the marked one as drawn) moves with the arrow keys, up and down the
# layers and along the tokens (Home, End: the row's ends; Page Up, Page Down: the output, the embeddings)
PICK_CELL = """const scroller = () => element.querySelector('.lens-scroll');
let resized = null;  // the row names' observer: one, for the grid shown (each new grid's replaced the old's)
watch('value', () => {  // a new grid: its marked cell (the last column) in view in the scroller
  const cell = element.querySelector('.lens-cell.selected'), side = element.querySelector('.lens-side');
  if (!scroller() || !cell || !side) return;
  const s = scroller().getBoundingClientRect(), c = cell.getBoundingClientRect();
  // The columns snap to the right edge of the sticky row names (CSS's scroll-snap), so a sideways swipe never
  // leaves a column half under them; the names' width depends on the language and the screen, so it is measured,
  // again whenever it changes (a phone turned). Mandatory: Large text's wider columns left a swipe's end too far
  // from a snap point for "proximity" to snap.
  // The scroll's end is a snap position too: room after the last column, so that the columns that fit there start
  // at the names' edge (else the grid opened at its end with a column's sliver under the names, on a phone).
  const pad = () => {  // in the scroller's own CSS pixels (Large text zooms the page: the rectangles are the screen's)
    if (!side.isConnected) return;
    const sc = scroller(), table = sc.querySelector('table'), box = sc.getBoundingClientRect();
    const scale = sc.offsetWidth / box.width, left = (side.getBoundingClientRect().right - box.left) * scale + 2;
    sc.style.scrollPaddingLeft = `${left}px`;
    const at = (x) => (x - box.left) * scale + sc.scrollLeft;  // a point of the screen in the scroller's content
    const rects = [...sc.querySelectorAll('tr')[1].querySelectorAll('td')].map((td) => td.getBoundingClientRect());
    const end = at(rects[rects.length - 1].right), first = rects.find((r) => end - at(r.left) <= sc.clientWidth - left);
    const had = parseFloat(table.style.paddingRight || '0');  // (measured with it: taking it away first would
    const bare = sc.scrollWidth - had - sc.clientWidth;          // scroll the grid back from its end)
    const room = first && bare > 0 ? Math.max(0, at(first.left) - left - bare) : 0;
    // (whole pixels and one more: a snap position past the integer scroll end is not taken)
    const wanted = room > 0 ? Math.ceil(room) + 1 : 0;
    if (wanted !== had) table.style.paddingRight = `${wanted}px`;
  };
  pad();
  resized?.disconnect();
  resized = new ResizeObserver(pad);
  resized.observe(side);
  scroller().scrollLeft += c.left + c.width / 2 - (s.left + s.width / 2);
});
const rove = (cell) => {  // `cell` the grid's one Tab stop
  element.querySelectorAll('.lens-cell[tabindex="0"]').forEach((c) => c.setAttribute('tabindex', '-1'));
  cell.setAttribute('tabindex', '0');
};
const clear = (cell) => {  // a cell in view, clear of the sticky row names on its left, at a snap position
  cell.scrollIntoView({block: 'nearest', inline: 'nearest'});  // (the snap can leave it cut at the right)
  const s = scroller(), box = s.getBoundingClientRect(), scale = s.offsetWidth / box.width;
  const edge = box.left + parseFloat(s.style.scrollPaddingLeft || '0') / scale, c = cell.getBoundingClientRect();
  // the column to bring to the names' edge: the cell itself, or on the right the first from which it fits
  const fits = (td) => c.right - td.getBoundingClientRect().left <= box.right - edge;
  const to = c.left < edge - 1 ? cell
    : c.right > box.right + 1 ? [...cell.closest('tr').querySelectorAll('td')].find(fits) || cell : null;
  if (to) s.scrollLeft += (to.getBoundingClientRect().left - edge) * scale;
};
element.addEventListener('click', (e) => {
  const cell = e.target.closest && e.target.closest('.lens-cell');
  if (!cell) return;
  element.querySelectorAll('.lens-cell.selected').forEach((c) => c.classList.remove('selected'));
  cell.classList.add('selected');
  rove(cell);
  trigger('select', {row: Number(cell.dataset.row), col: Number(cell.dataset.col)});
});
element.addEventListener('keydown', (e) => {
  const cell = e.target.closest && e.target.closest('.lens-cell');
  if (!cell || e.altKey || e.ctrlKey || e.metaKey || e.shiftKey) return;
  const row = Number(cell.dataset.row), col = Number(cell.dataset.col);
  const cols = cell.closest('tr').querySelectorAll('.lens-cell').length;
  const rows = element.querySelectorAll('.lens-cell').length / cols;
  const to = {ArrowUp: [row + 1, col], ArrowDown: [row - 1, col], ArrowLeft: [row, col - 1],
              ArrowRight: [row, col + 1], Home: [row, 0], End: [row, cols - 1], PageUp: [rows - 1, col],
              PageDown: [0, col]}[e.key];
  if (!to) return;
  e.preventDefault();  // the focus moves, not the page
  const next = element.querySelector(`.lens-cell[data-row="${to[0]}"][data-col="${to[1]}"]`);
  if (!next) return;
  rove(next);
  next.focus({preventScroll: true});
  clear(next);
});"""  # i18n: not shown (JavaScript)

INTRO = T("""\
### Layers: how GPT-2's guess takes shape
GPT-2 passes every word up through its layers, one after another, and only the last one says what comes next. The \
**logit lens** asks every layer: *if you had to guess now, what would come next?* Read the grid **bottom-up**: the \
text at the foot, then the embeddings (what the words are before any layer), then each layer, GPT-2's own answer on \
top. Darker blue is a surer guess. **Click a cell** for its likeliest words; **watch one word** to follow its rank \
up the layers.
""")
COMMIT_HELP = T("**When did GPT-2 decide?** Each word is coloured by the layer from which GPT-2's top guess for it "
                "stayed on top: already at the embeddings (darkest blue), in the early, middle or late layers, or "
                "only at the last layer (yellow). Uncoloured words were not GPT-2's top guess: someone else chose "
                "them. Press **Let GPT-2 continue** to add words GPT-2 chose itself.")


def layers_tab(models: AppModels, *, workspace: Workspace) -> TabParts:
    exports = Exports(workspace)
    with gr.Blocks() as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            text = gr.Textbox(DEFAULT_TEXT, label=T("Text") + f" (\u2264 {MAX_LENS_TOKENS} tokens)", scale=4,
                              max_lines=3, elem_id="layers-text")
            show = gr.Button(T("Read the layers"), variant="primary", scale=1, elem_id="layers-show")
        with gr.Row(equal_height=True):
            target = gr.Textbox(label=T("Watch one word (one token, with its space: \" Paris\"; blank: GPT-2's answer)"),
                                scale=3, max_lines=1, elem_id="layers-target")
            watch = gr.Button(T("Watch"), scale=1, elem_id="layers-watch")
            more = gr.Button(T(CONTINUE), scale=1, elem_id="layers-continue")
        note = gr.Markdown(elem_id="layers-note")
        with gr.Row(equal_height=True):  # the cell's details beside the grid, following it down a tall grid
            with gr.Column(scale=3, min_width=320):
                grid = gr.HTML(js_on_load=PICK_CELL, elem_id="layers-grid")
                save_png_button("layers-grid", file="gpt2-layers-grid.png", needs=".lens-cell", whole=True,
                                title="What each layer would say next",  # i18n: key (demo/save_view.py draws it)
                                caption=["{#layers-note p:first-of-type}"])  # every column, even where a phone scrolls sideways
            with gr.Column(scale=1, min_width=280):
                details = gr.HTML(elem_id="layers-details")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                summary = gr.Markdown(elem_id="layers-summary")
                chart = gr.HTML(elem_id="layers-chart")
                save_png_button("layers-chart", file="gpt2-layers-one-word.png", needs="svg",
                                title="One word through the layers",  # i18n: key (demo/save_view.py draws it)
                                caption=["{#layers-summary}"])
            with gr.Column(scale=2, min_width=300):
                gr.Markdown(COMMIT_HELP)
                commitment = gr.HighlightedText(label=T("When GPT-2 committed to each word"), color_map=COMMIT_COLORS,
                                                show_legend=True, show_inline_category=False, combine_adjacent=False,
                                                elem_id="layers-commitment", elem_classes="tokens")
                with gr.Row():  # the coloured text for lesson notes: a picture, and a page with each word's layer
                    save_png_button("layers-commitment", file="gpt2-layers-commitment.png", needs=".token",
                                    caption=["{#layers-note p:first-of-type}"])
                    save_html = gr.DownloadButton(T("Download .html (coloured)"), size="sm", interactive=False,
                                                  elem_id="layers-save-html")
        copy_link("layers", {"text": text, "target": target})
        lens = gr.State(None)
        chosen = gr.State(None)  # the (row, column) of the cell last clicked, kept while the text stays the same

        drawn = [note, grid, details, summary, chart, commitment, save_html, lens, chosen]
        read = dict(fn=make_read(models, exports), inputs=[text, target, lens, chosen], outputs=drawn, api_visibility="private",
                    trigger_mode="always_last", concurrency_limit=2, concurrency_id="layers")
        gr.on([show.click, text.submit, watch.click, target.submit], **read)
        gr.on([show.click, text.submit], None, js=SCROLL_TO_GRID, api_visibility="private")
        grid.select(pick_cell, inputs=lens, outputs=[details, summary, chart, chosen], api_visibility="private",
                    queue=False).then(None, js=SHOW_DETAILS, api_visibility="private")
        commitment.select(pick_word, inputs=lens, outputs=[grid, details, summary, chart, chosen],
                          api_visibility="private", queue=False)
        more.click(make_continue(models), inputs=text, outputs=text, api_visibility="private",
                   concurrency_limit=2, concurrency_id="layers").success(**read)
        # Continue is pressable while the grid has room for a word more: a full grid says so on the button, where
        # presses would each have raised a toast
        text.change(make_room(models), inputs=text, outputs=more, api_visibility="private", queue=False,
                    trigger_mode="always_last", show_progress="hidden")
        endpoint(make_layers_api(models), returns=dict, api_name="layers", concurrency_limit=2,
                 concurrency_id="layers")
    opened = {**read, "fn": make_read(models, exports, opening=True)}
    return TabParts(tab, {"text": text, "target": target}, on_open=lambda tab_item: tab_item.select(**opened))


def make_read(models: AppModels, exports: Exports, *, opening: bool = False):
    def read(text: str, target: str, before: LogitLens | None, chosen: tuple[int, int] | None,
             request: gr.Request) -> Iterator[list]:
        """The lens of `text` drawn: the grid, the chosen cell's top guesses, the watched word's ranks at its column.
        The chosen cell is the one last clicked while the text stays the same (a new word to watch), else the
        output after the whole text. A refusal is a toast; the grid drawn stays only if it is of `text`.

        `opening`: the tab opened, no one pressed anything (a link made on another model may watch a word of two
        tokens here): a word to watch that is refused is said in its summary's place, with no toast, and the grid is
        drawn without it."""
        unwatched = None
        try:
            with user_facing_errors(), models.use(getattr(request, "session_hash", None)) as lm:
                if opening and target:
                    try:
                        lm.one_token("target", target)
                    except ValueError as e:
                        unwatched, target = in_page_language(str(e)), ""
                lens = lm.logit_lens(check_text("text", text), top=TOP, target=target or None)
                name, model = lm.name, model_line(lm.describe())
        except gr.Error as e:
            if before is None or "".join(before.tokens) != text:  # (a lens's tokens join to its text)
                yield refused(e.message)
            raise
        same = before is not None and before.token_ids == lens.token_ids and len(before.layers) == len(lens.layers)
        row, col = tuple(chosen) if same and chosen is not None else (len(lens.layers) - 1, len(lens.tokens) - 1)
        note = (tr("`{name}`: {layers} layers \u00d7 {tokens} tokens.", name=name, layers=len(lens.layers) - 1,
                   tokens=len(lens.tokens)) + "\n\n"  # two paragraphs: a saved picture's caption is the first
                + tr("Click any cell: the top right one is GPT-2's answer, its guess for what follows the whole text."))
        commitment = gr.HighlightedText(commitment_segments(lens), color_map=commit_colors())  # its legend translated
        # the coloured text as a page of its own, for the Download .html button
        save_html = gr.DownloadButton(value=exports.write("gpt2-layers-commitment.html",
                                                          commitment_html(lens, model=model)), interactive=True)
        summary = summary_text(lens, col) if unwatched is None else "\u26a0 " + message_markdown(unwatched)
        yield [note, grid_html(lens, selected=(row, col)), cell_html(lens, row, col), summary,
               rank_chart_svg(lens, col), commitment, save_html, lens, (row, col)]

    return read


def refused(message: str) -> list:
    """The tab after a refused text, with `message` (as the toast has it) in the grid's place: no grid, details,
    chart or coloured text of the text before, for a class never to read them as this one's."""
    return ["\u26a0\ufe0f " + message_markdown(message), "", "", "", "", gr.HighlightedText(None),
            gr.DownloadButton(value=None, interactive=False), None, None]


def summary_text(lens: LogitLens, col: int) -> str:
    return tr("**Watch one word:** {summary}", summary=markdown_text(rank_summary(lens, col)))


def pick_cell(lens: LogitLens | None, evt: gr.EventData) -> list:
    """A clicked cell: its top guesses, and the watched word's ranks at its column."""
    row, col = int(evt.row), int(evt.col)
    if lens is None or not (0 <= row < len(lens.layers) and 0 <= col < len(lens.tokens)):
        return [gr.skip()] * 4
    return [cell_html(lens, row, col), summary_text(lens, col), rank_chart_svg(lens, col), (row, col)]


def pick_word(lens: LogitLens | None, evt: gr.SelectData) -> list:
    """A clicked word of the coloured text: the output cell that guessed it, chosen in the grid."""
    if lens is None:
        return [gr.skip()] * 5
    shown = [t for t in range(len(lens.tokens)) if lens.tokens[t]]  # the segments HighlightedText shows
    t = shown[evt.index] if 0 <= evt.index < len(shown) else 0
    col = max(t - 1, 0)  # a word is guessed at the token before it
    row = len(lens.layers) - 1
    return [grid_html(lens, selected=(row, col)), cell_html(lens, row, col), summary_text(lens, col),
            rank_chart_svg(lens, col), (row, col)]


def make_room(models: AppModels):
    def room(text: str, request: gr.Request) -> gr.Button:
        """Let GPT-2 continue, pressable while `text` leaves the grid room for a token more."""
        lm = models.serving(getattr(request, "session_hash", None))
        if lm is None:
            return gr.skip()  # no model: pressing it says why
        if len(lm.tokenizer.encode(text or "")) < MAX_LENS_TOKENS:
            return gr.Button(tr(CONTINUE), interactive=True)
        return gr.Button(tr(FULL, n=MAX_LENS_TOKENS), interactive=False)

    return room


def make_continue(models: AppModels):
    def continue_text(text: str, request: gr.Request) -> str:
        """`text` and GPT-2's greedy continuation, as long as the grid still holds it. A text the grid cannot show
        comes back as it is: the drawing after it refuses it in the grid's place, as "Read the layers" does."""
        with user_facing_errors(), models.use(getattr(request, "session_hash", None)) as lm:
            try:
                check_text("text", text)
            except ValueError:
                return text
            room = MAX_LENS_TOKENS - len(lm.tokenizer.encode(text))
            if room < 1:  # (the button is off then; a press sent as the text grew)
                return text
            (sample,) = lm.generate(text, max_new_tokens=min(CONTINUE_TOKENS, room), temperature=0)
            pieces = list(sample.token_texts)
            while pieces and len(lm.tokenizer.encode(text + "".join(pieces))) > MAX_LENS_TOKENS:
                pieces.pop()  # the text and its continuation may split into more tokens together than apart
        return text + "".join(pieces)

    return continue_text


def make_layers_api(models: AppModels):
    def layers(text: str = DEFAULT_TEXT, target: str = "", request: gr.Request | None = None) -> dict:
        """The logit lens of `text`: for every layer (0 = the embeddings, the last = the model's output) and every
        token, the top 5 next tokens with their probabilities, the rank there of the model's final top guess, and
        with `target` (one token, e.g. " Paris"; "" for none) that token's rank and probability."""
        with user_facing_errors(), models.use(getattr(request, "session_hash", None)) as lm:
            lens = lm.logit_lens(check_text("text", text), top=TOP, target=target or None)
            name = lm.name
        return {"model": name, "tokens": lens.tokens, "layers": lens.layers, "target": lens.target,
                "committed": lens.committed,
                "cells": [[{"top": [{"token": t, "id": i, "prob": round(p, 6)} for t, i, p in cell.top],
                            "final_rank": cell.final_rank,
                            **({"target_rank": cell.target_rank, "target_prob": round(cell.target_prob or 0.0, 6)}
                               if lens.target is not None else {})}
                           for cell in row] for row in lens.cells]}

    return layers
