"""Drawing the logit lens for the Layers tab: the layers x tokens grid, a cell's top guesses, the rank of one word
through the layers, and the text coloured by when the model committed to each word.

The grid reads bottom-up, as the model runs: the text's tokens at the foot, the embeddings above them, then each
layer, the model's own output on top, and over it the token that really comes next. Each cell is the layer's top guess
for the token after its column's token, its blue the guess's probability (white 0% to blue 100%, as the attention maps'
cells), its ink black or white, whichever reads better on that blue (at least 4.58:1). A guess equal to the text's next
token is underlined. Cells are buttons: a click (or Enter) picks one. The grid is one stop of the Tab key (a roving
tabindex: only the chosen cell is in the Tab order; demo/layers_tab.py's PICK_CELL moves it with the arrow keys), and
a grid to screen readers (role=grid: its rows and row and column headers, arrow keys passed to the page).

The rank chart is an SVG of its own: ranks run from 1 to 50,257, so they need a log scale, with the top guess at the
top; gr.LinePlot's axes are linear and cannot be turned over.
"""

from __future__ import annotations

import html
import math
import re

from demo.attention_maps import INK, label
from demo.i18n import language, number, tr
from demo.save_view import Piece, html_page
from demo.tokens import bar, colors, shown_token
from gpt2_core.explain.lens import LogitLens

WHITE = (255, 255, 255)
DARK_INK, LIGHT_INK = "#000000", "#ffffff"  # pure black: the grey-black of the page's text would leave a
# band of blues where neither reaches 4.5:1
CHART_WIDTH, CHART_HEIGHT = 420, 280  # drawing units; the SVG scales to its column (a phone's 330 px: 14 px letters)
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 112, 16, 16, 70
LINE = "#c2410c"  # orange 700, the app's outline colour: apart from the grid's blues

# When the model committed to each word of a text: bands of its depth, early (darker) to late (commitment_segments);
# each at least 4.5:1 behind the page's dark text. A word that is not the model's top guess stays uncoloured.
# The names are the legend's, in English; a request's page gets them translated (commit_colors).
COMMIT_COLORS = {"embeddings": "#3b82f6", "early layers": "#60a5fa", "middle layers": "#93c5fd",
                 "late layers": "#bfdbfe", "last layer only": "#facc15"}


def commit_colors() -> dict[str, str]:
    """COMMIT_COLORS named in the language of the request (the legend of the coloured text)."""
    return colors(COMMIT_COLORS)


def blend(p: float) -> tuple[int, int, int]:
    """White blended into the attention maps' blue by `p` (0..1)."""
    p = min(max(p, 0.0), 1.0)
    return tuple(round(w * (1 - p) + b * p) for w, b in zip(WHITE, INK, strict=True))  # type: ignore[return-value]


def luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG's relative luminance."""
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def ink_on(rgb: tuple[int, int, int]) -> str:
    """Black or white text, whichever contrasts more with `rgb`: at least 4.58:1 (where the two are equal, luminance
    0.18), WCAG AA's 4.5:1 for small text."""
    lum = luminance(rgb)
    return DARK_INK if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else LIGHT_INK


def visible(token: str) -> str:
    """A token with its control characters written as \\x10 (a layer's guess is often a byte no text would print,
    which a font draws as nothing or a box); line breaks and tabs stay, for `label` and `shown_token` to mark."""
    return "".join(f"\\x{ord(c):02x}" if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 else c
                   for c in token)


def cell_label(token: str) -> str:
    """A guess as a grid cell shows it: without its leading space, never blank, every character visible."""
    return label(visible(token))


def shown(token: str) -> str:
    """A token as the details and the chart name it: its spaces and line breaks marked, every character visible."""
    return shown_token(visible(token))


def layer_name(name: str) -> str:
    """A row's name from gpt2_core ("embeddings", "layer 3") in the language of the request."""
    if numbered := re.fullmatch(r"layer (\d+)", name):
        return tr("layer {n}", n=numbered.group(1))
    return tr(name)


def row_name(lens: LogitLens, row: int) -> str:
    last = len(lens.layers) - 1
    name = layer_name(lens.layers[row])
    return tr("{layer} (output)", layer=name) if row == last else name


BYTES_HELP = ("{example}: a token that is only part of a character, written as its bytes (an accented letter, a "
              "symbol or an emoji takes several bytes, and a layer can guess one of them).")  # i18n: key
KEYS_HELP = ("Keyboard: Tab to the grid, the arrow keys to move (up and down the layers, along the tokens), "
             "Enter for a cell's likeliest words.")  # i18n: key


def grid_html(lens: LogitLens, *, selected: tuple[int, int] | None = None) -> str:
    """The layers x tokens grid as an HTML table (rows top-down: output ... embeddings, then the input tokens)."""
    T = len(lens.tokens)
    last = len(lens.layers) - 1
    if selected is None or not (0 <= selected[0] <= last and 0 <= selected[1] < T):
        focus = (last, T - 1)  # the Tab key lands on the chosen cell, else GPT-2's answer after the whole text
    else:
        focus = tuple(selected)
    nexts = [cell_label(t) for t in lens.tokens[1:]] + ["?"]
    head = "".join(f"<th scope='col' class='lens-next'>{html.escape(n)}</th>" for n in nexts)  # i18n: not shown (markup)
    next_in_text = html.escape(tr("next in the text"))
    rows = [f"<tr><th scope='row' class='lens-side'>{next_in_text}</th>{head}</tr>"]  # i18n: not shown (markup)
    for row in reversed(range(len(lens.layers))):
        cells = []
        for t, cell in enumerate(lens.cells[row]):
            text, token_id, prob = cell.top[0]
            rgb = blend(prob)
            right = t + 1 < T and token_id == lens.token_ids[t + 1]
            classes = "lens-cell" + (" lens-right" if right else "") + (" selected" if selected == (row, t) else "")
            fields = dict(row=row_name(lens, row), token=shown(lens.tokens[t]), guess=shown(text), prob=number(prob, ".0%"))
            name = (tr("{row}, after {token}: {guess} {prob}, the text's next token", **fields) if right
                    else tr("{row}, after {token}: {guess} {prob}", **fields))
            name = html.escape(name, quote=True)
            tabindex = 0 if focus == (row, t) else -1
            cells.append(f"<td><button type='button' class='{classes}' data-row='{row}' data-col='{t}' "  # i18n: not shown
                         f"tabindex='{tabindex}' "  # i18n: not shown
                         f"style='background: rgb{rgb}; color: {ink_on(rgb)}' title='{name}' "  # i18n: not shown
                         f"aria-label='{name}'>{html.escape(cell_label(text))}</button></td>")
        side = "lens-side lens-output" if row == last else "lens-side"  # i18n: not shown (classes)
        side_name = html.escape(row_name(lens, row))
        rows.append(f"<tr><th scope='row' class='{side}'>{side_name}</th>{''.join(cells)}</tr>")  # i18n: not shown
    inputs = "".join(f"<th scope='col' class='lens-input'>{html.escape(cell_label(t))}</th>"  # i18n: not shown
                     for t in lens.tokens)
    the_text = html.escape(tr("the text"))
    rows.append(f"<tr><th scope='row' class='lens-side'>{the_text}</th>{inputs}</tr>")  # i18n: not shown (markup)
    region = html.escape(tr("The layers grid"), quote=True)
    table = html.escape(tr("Each layer's top guess for the next token"), quote=True)
    help_line = tr("Read bottom-up: the text at the foot, GPT-2's own answer on top. Darker blue: a surer guess. "
                   "<u><b>Underlined</b></u>: the guess is the text's next token.")
    shown_texts = [*lens.tokens, *(cell.top[0][0] for row in lens.cells for cell in row)]
    if in_bytes := next((t for t in shown_texts if t.startswith("[bytes ")), None):  # gpt2_core's LanguageModel.token_text
        help_line += " " + tr(BYTES_HELP, example=f"<code>{html.escape(in_bytes)}</code>")
    keys = tr(KEYS_HELP)
    # the scroller is no Tab stop of its own: the chosen cell, always in the Tab order, scrolls it
    return (f"<div class='lens-scroll' role='region' aria-label='{region}'>"  # i18n: not shown (markup)
            f"<table class='lens-grid' role='grid' aria-label='{table}' aria-describedby='lens-keys'>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
            f"<p class='lens-help'>{help_line}</p>"  # how to use the page, not the grid: no part of a saved picture
            f"<p class='lens-help save-view' id='lens-keys'>{keys}</p>")  # (save_view.js skips .save-view)


def cell_html(lens: LogitLens, row: int, col: int) -> str:
    """A cell's top guesses with their probabilities (and the watched word's rank there)."""
    cell = lens.cells[row][col]
    after = html.escape(shown(lens.tokens[col]))
    lines = "".join(f"<tr><td class='tok'>{html.escape(shown(text))}</td><td>{bar(prob, 'model')}</td></tr>"  # i18n: not shown
                    for text, _, prob in cell.top)
    watched = ""
    if lens.target is not None and cell.target_rank is not None and cell.target_prob is not None:
        watched = "<p class='note'>" + tr("{word} is number {rank} here ({prob}).", word=html.escape(shown(lens.target)),
                                          rank=f"<b>{number(cell.target_rank)}</b>",
                                          prob=number(cell.target_prob, ".2%")) + "</p>"
    heading = tr("{row}, after {token} (token {i} of {n}): its {k} likeliest next tokens",
                 row=f"<b>{html.escape(row_name(lens, row))}</b>", token=f"<b class='tok'>{after}</b>", i=col + 1,
                 n=len(lens.tokens), k=len(cell.top))
    region = html.escape(tr("The chosen cell"), quote=True)
    token, probability = html.escape(tr("token")), html.escape(tr("probability at this layer"))
    return (f"<div class='details' tabindex='0' role='region' aria-label='{region}'><p>{heading}</p>"  # i18n: not shown
            f"<table><thead><tr><th>{token}</th><th>{probability}</th></tr></thead>"
            f"<tbody>{lines}</tbody></table>{watched}</div>")


def watched_ranks(lens: LogitLens, col: int) -> tuple[str, list[int], str]:
    """(the watched word, its rank at each row at position `col`, what it is): the target, else the model's own
    final top guess there."""
    if lens.target is not None:
        return lens.target, [row[col].target_rank or 0 for row in lens.cells], tr("the word you chose")
    text = lens.cells[-1][col].top[0][0]
    return text, [row[col].final_rank for row in lens.cells], tr("GPT-2's final answer here")


def ordinal(n: int) -> str:
    """1st, 2nd... in the request's language (es: 1.º; fr: 1er, 2e)."""
    if language() == "es":
        return number(n) + ".\u00ba"
    if language() == "fr":
        return number(n) + ("er" if n == 1 else "e")
    return number(n) + ("th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th"))


def rank_summary(lens: LogitLens, col: int) -> str:
    """One sentence: where the watched word starts, and from which layer it is the top guess (if it becomes it)."""
    word, ranks, what = watched_ranks(lens, col)
    on_top = next((r for r in range(len(ranks)) if all(x == 1 for x in ranks[r:])), None)
    fields = dict(word=shown(word), what=what, after=shown(lens.tokens[col]), first=ordinal(ranks[0]))
    if on_top is None:
        return tr("\u201c{word}\u201d ({what}) after \u201c{after}\u201d: {first} at the embeddings, {last} at the "
                  "output: never GPT-2's top guess here.", last=ordinal(ranks[-1]), **fields)
    if on_top == 0:
        return tr("\u201c{word}\u201d ({what}) after \u201c{after}\u201d: {first} at the embeddings, and the top "
                  "guess at every layer.", **fields)
    return tr("\u201c{word}\u201d ({what}) after \u201c{after}\u201d: {first} at the embeddings; the top guess from "
              "{layer} on.", layer=layer_name(lens.layers[on_top]), **fields)


def rank_chart_svg(lens: LogitLens, col: int) -> str:
    """The watched word's rank at each row at position `col`, log scale, the top guess (1st) on top."""
    word, ranks, _ = watched_ranks(lens, col)
    rows = len(ranks)
    decades = max(1, math.ceil(math.log10(max(max(ranks), 2))))
    bottom = 10**decades  # 1st at the top, this at the bottom: the next power of ten, or the vocabulary's last rank
    if lens.vocab_size is not None and max(ranks) <= lens.vocab_size < bottom:
        bottom = lens.vocab_size  # (the bundled model's 4,096 words: no axis down to a 10,000th)
    w, h = CHART_WIDTH - CHART_LEFT - CHART_RIGHT, CHART_HEIGHT - CHART_TOP - CHART_BOTTOM

    def x_of(row: int) -> float:
        return CHART_LEFT + (w * row / (rows - 1) if rows > 1 else w / 2)

    def y_of(rank: int) -> float:
        return CHART_TOP + h * math.log10(max(rank, 1)) / math.log10(bottom)

    title = rank_summary(lens, col)
    parts = [f'<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{html.escape(title)}" '  # i18n: not shown
             f'xmlns="http://www.w3.org/2000/svg" class="lens-chart">', f"<title>{html.escape(title)}</title>"]
    for rank in sorted({10**d for d in range(decades + 1) if 10**d <= bottom} | {bottom}):
        y = y_of(rank)
        parts.append(f'<line x1="{CHART_LEFT}" x2="{CHART_LEFT + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        name = html.escape(tr("1st (top)") if rank == 1 else ordinal(rank))
        parts.append(f'<text x="{CHART_LEFT - 6}" y="{y + 5:.1f}" text-anchor="end">{name}</text>')  # i18n: not shown
    step = max(1, math.ceil(rows / 13))  # at most 13 row labels: gpt2-xl's 49 rows would overlap
    for r in range(0, rows, step):
        name = html.escape(tr("emb.")) if r == 0 else str(r)
        parts.append(f'<text x="{x_of(r):.1f}" y="{CHART_TOP + h + 30}" text-anchor="middle">{name}</text>')  # i18n: not shown
    axis = html.escape(tr("layer (emb. = the embeddings)"))
    parts.append(f'<text x="{CHART_LEFT + w / 2:.1f}" y="{CHART_HEIGHT - 6}" text-anchor="middle" '  # i18n: not shown
                 f'class="axis">{axis}</text>')
    points = " ".join(f"{x_of(r):.1f},{y_of(rank):.1f}" for r, rank in enumerate(ranks))
    parts.append(f'<polyline points="{points}" fill="none" stroke="{LINE}" stroke-width="3"/>')  # i18n: not shown
    for r, rank in enumerate(ranks):
        point = tr("{layer}: {word} is {rank}", layer=layer_name(lens.layers[r]), word=shown(word), rank=ordinal(rank))
        parts.append(f'<circle cx="{x_of(r):.1f}" cy="{y_of(rank):.1f}" r="5" fill="{LINE}">'  # i18n: not shown (markup)
                     f"<title>{html.escape(point)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def band(row: int, n_layer: int) -> str:
    """The part of the model's depth where row `row` (0: embeddings, n_layer: output) lies."""
    if row == 0:
        return "embeddings"  # i18n: key (a name of COMMIT_COLORS)
    if row == n_layer:
        return "last layer only"  # i18n: key
    third = row / n_layer
    return "early layers" if third <= 1 / 3 else "middle layers" if third <= 2 / 3 else "late layers"  # i18n: key


def commitment_segments(lens: LogitLens) -> list[tuple[str, str | None]]:
    """The text for gr.HighlightedText, each token coloured by the band of the layer from which the model's top
    guess for it (at the token before) stayed on top, the band named in the request's language (commit_colors). A
    token that is not that guess, and the first (nothing guessed it), stay uncoloured."""
    n_layer = len(lens.layers) - 1
    out: list[tuple[str, str | None]] = [(lens.tokens[0], None)]
    for t in range(1, len(lens.tokens)):
        guess = lens.cells[-1][t - 1].top[0][1]
        out.append((lens.tokens[t], tr(band(lens.committed[t - 1], n_layer)) if guess == lens.token_ids[t] else None))
    return [(text, category) for text, category in out if text]


COMMIT_NOTE = ("Each word is coloured by the layer from which GPT-2's top guess for it stayed on top: already at the "
               "embeddings (darkest blue), in the early, middle or late layers, or only at the last layer (yellow). "
               "Uncoloured words were not GPT-2's top guess: someone else chose them. Hover over a word for its "
               "layer.")  # i18n: key


def commitment_pieces(lens: LogitLens) -> list[Piece]:
    """The commitment colouring (commitment_segments) for a saved page: each word with its band's English name and,
    as its tooltip, the layer from which it stayed GPT-2's top guess."""
    n_layer = len(lens.layers) - 1
    pieces = [Piece(lens.tokens[0], None, tr("the first token: nothing before it guessed it"))]
    for t in range(1, len(lens.tokens)):
        row = lens.committed[t - 1]
        if lens.cells[-1][t - 1].top[0][1] == lens.token_ids[t]:
            pieces.append(Piece(lens.tokens[t], band(row, n_layer),
                                tr("GPT-2's top guess from {row} on", row=row_name(lens, row))))
        else:
            pieces.append(Piece(lens.tokens[t], None, tr("not GPT-2's top guess here")))
    return [piece for piece in pieces if piece.text]


def commitment_html(lens: LogitLens, *, model: str) -> str:
    """The commitment colouring as a self-contained page (Download .html), in the request's language."""
    caption = [tr("`{name}`: {layers} layers \u00d7 {tokens} tokens.", name=model, layers=len(lens.layers) - 1,
                  tokens=len(lens.tokens)).replace("`", "")]
    return html_page(title=tr("When GPT-2 committed to each word"), caption=caption, legend=COMMIT_COLORS,
                     sections=[("", commitment_pieces(lens))], note=tr(COMMIT_NOTE))


CSS = """
.lens-scroll { overflow-x: auto; max-width: 100%; scroll-snap-type: x mandatory; }
.lens-grid td { scroll-snap-align: start; }  /* the scroll padding (set by the page script) clears the row names */
.lens-grid { border-collapse: separate; border-spacing: 2px; font-size: 16px; border: none !important; margin: 0; }
.lens-grid th, .lens-grid td { border: none !important; }
.lens-help { color: #374151; font-size: 15px; margin: 2px 0 0; }
.lens-grid th { font-weight: 600; white-space: pre; padding: 0 4px; color: #111827; }
.lens-grid th.lens-side { position: sticky; left: 0; z-index: 2; background: var(--background-fill-primary);
  text-align: right; font-size: 14px; white-space: normal; min-width: 5.5em; max-width: 7.5em; line-height: 1.2; }
.lens-grid th.lens-output { color: #9a3412; }
.lens-grid th.lens-next { color: #374151; font-weight: 400; font-style: italic; }
.lens-grid th.lens-input { border-top: 2px solid #111827; }
.lens-grid td { padding: 0; }
.lens-cell { display: block; width: 100%; min-width: 3.2em; max-width: 8em; overflow: hidden; text-overflow: ellipsis;
  white-space: pre; padding: 4px 6px; border: 1px solid #cbd5e1; border-radius: 4px; cursor: pointer;
  font-family: var(--font-mono); font-size: 15px; }
.lens-cell.lens-right { text-decoration: underline; text-decoration-thickness: 2px; font-weight: 700; }
.lens-cell:hover { outline: 2px solid #1e3a8a; outline-offset: 1px; }
.lens-cell.selected { outline: 3px solid #c2410c; outline-offset: 1px; position: relative; }
/* the keyboard's cell: a dark ring with a white one inside it, on any blue; the chosen cell keeps its orange outside */
.lens-cell:focus-visible { outline: 3px solid #1e3a8a; outline-offset: 1px; box-shadow: inset 0 0 0 2px #ffffff;
  position: relative; z-index: 1; }
.lens-cell.selected:focus-visible { outline-color: #c2410c;
  box-shadow: inset 0 0 0 2px #ffffff, inset 0 0 0 5px #1e3a8a; }
#layers-details { position: sticky; top: 4px; }  /* beside the grid: in view while a tall grid (gpt2-xl) scrolls */
.lens-chart { width: 100%; max-height: 42vh; font-family: var(--font); }
.lens-chart text { fill: #111827; font-size: 18px; }
.lens-chart .grid { stroke: #d1d5db; stroke-width: 1; }
@media (max-width: 480px) { .lens-chart text { font-size: 22px; } }  /* the drawing shrinks to a phone's width */
"""
