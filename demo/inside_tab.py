"""The Inside tab: where each word looks. GPT-2's attention (a triangle: only the words before) beside BERT's (a square:
both sides), one layer and head at a time, with every head of the layer as a picture to pick from and the chosen
word's strongest links spelled out.

The hidden `/attention(text, layer, head)` API endpoint returns both models' tokens and that head's weights as JSON
(layer and head count from 1, as on the page). A sentence's maps are cached, so moving a slider only redraws.
Without BERT (offline, not downloaded) its column says why, rendered, in place of its map, sliders and heads.

The page's events take their inputs raw (no Gradio preprocessing, whose range check names no slider): a number typed
into a Layer or Head box is sent at once, as typed, by the slider's own input event, and one beyond the model's layers
or heads is refused with the API's message, naming `layer` or `head` and the range. So Show attention sends what the
sliders show (not demo/knobs.py's `typed_values`: a typed number is answered once), clamped to the models' ranges:
they may be another model's, switched since. A refused input never leaves a picture of another text on the page: what
is drawn stays only while it is of the text in the box (a refused slider goes back to where it was drawn), else the
refusal's message takes its place, as Generate's "Not written" does.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from demo.api import endpoint
from demo.attention_maps import head_pictures, heatmap_svg, label
from demo.errors import markdown_text, message_markdown, user_facing_errors
from demo.i18n import T, number, tr
from demo.links import TabParts, copy_link
from demo.models import LOAD_ERRORS, AppModels
from demo.save_view import save_png_button
from demo.unavailable import as_html, bert_missing
from gpt2_core.explain.attention import Attention, check_layer_head, strongest_links
from gpt2_core.generate.settings import check_text

DEFAULT_SENTENCE = "The animal didn't cross the street because it was too tired."  # i18n: model text
LINKS = 3  # strongest links listed for the chosen word
CACHED = 16  # sentences whose maps are kept
MAP_NOTES = {  # under a saved map: how to read it (for demo/save_view.py to show in the page's language)
    "gpt2": "Each row is a word; its cells are the words it looks at, darker where it looks more. Grey: the words "  # i18n: key
            "after it, which GPT-2 cannot see.",
    "bert": "Each row is a word; its cells are the words it looks at, darker where it looks more. BERT sees the whole "
            "sentence.",  # i18n: key
}
MAP_CAPTION = "Sentence: {#inside-text textarea}"  # i18n: key (a template the page fills, as MAP_NOTES)
GPT2_KIND = "GPT-2: left only (a triangle)"  # i18n: key
BERT_KIND = "BERT: both sides (a square)"  # i18n: key
SCROLL_TO_MAPS = "() => document.getElementById('inside-links')?.scrollIntoView({block: 'start', behavior: 'smooth'})"

INTRO = """\
### Inside: where each word looks
**GPT-2 reads left to right, so a word sees only the words before it: its attention map is a triangle. BERT reads the \
whole sentence at once: its map is a full square.** Each row is a word; its cells are the words it looks at, darker \
where it looks more (grey: what GPT-2 cannot see). Each *head* learns its own way of looking: pick one below the map.
"""  # i18n: key


@dataclass(frozen=True)
class Drawn:
    """What the page's maps show: the sentence, and each model's (layer, head) (BERT's None without BERT)."""

    text: str
    gpt2: tuple[int, int]
    bert: tuple[int, int] | None


@dataclass(frozen=True)
class Maps:
    """One model's attention for a sentence, and where each token sits in it (for matching GPT-2's and BERT's)."""

    model: str
    attention: Attention
    spans: list[tuple[int, int]]  # character offsets of each token into the sentence


class MapCache:
    def __init__(self, size: int = CACHED):
        self._lock = threading.Lock()
        self._maps: OrderedDict[tuple, Maps] = OrderedDict()
        self._size = size

    def get(self, key: tuple, compute) -> Maps:
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        maps = compute()
        with self._lock:
            self._maps[key] = maps
            while len(self._maps) > self._size:
                self._maps.popitem(last=False)
        return maps


def inside_tab(models: AppModels) -> TabParts:
    cache = MapCache()
    with gr.Blocks() as tab:
        gr.Markdown(T(INTRO))
        with gr.Row(equal_height=True):
            text = gr.Textbox(DEFAULT_SENTENCE, label=T("Sentence"), scale=4, max_lines=3, elem_id="inside-text")
            show = gr.Button(T("Show attention"), variant="primary", scale=1, elem_id="inside-show")
        follow = gr.Radio([], label=T("Follow a word: where does it look? (its row is outlined)"),
                          elem_id="inside-follow")
        links = gr.Markdown(elem_id="inside-links")
        with gr.Row(equal_height=False):
            columns = {}
            for key in ("gpt2", "bert"):
                with gr.Column(min_width=320):
                    heading = gr.Markdown(elem_id=f"inside-{key}-title")
                    picture = gr.HTML(elem_id=f"inside-{key}-map")
                    save_png_button(f"inside-{key}-map", file=f"{key}-attention.png", needs="svg.attention-map",
                                    caption=[f"{{#inside-{key}-title}}", MAP_CAPTION],
                                    note=MAP_NOTES[key])
                    with gr.Row():  # (attention_maps.CSS: each number box beside its name, the two bars level)
                        layer = gr.Slider(1, 12, 1, step=1, label=T("Layer"), elem_id=f"inside-{key}-layer",
                                          elem_classes="head-knob")
                        head = gr.Slider(1, 12, 1, step=1, label=T("Head"), elem_id=f"inside-{key}-head",
                                         elem_classes="head-knob")
                    heads = gr.Gallery(label=T("Every head of this layer: click one"), columns=6, height=240,
                                       allow_preview=False, object_fit="contain", elem_id=f"inside-{key}-heads",
                                       elem_classes="head-pictures")
                    columns[key] = (heading, layer, head, picture, heads)
        copy_link("inside", {"text": text})

        g, b = columns["gpt2"], columns["bert"]
        drawn = gr.State(None)  # what the maps show: Drawn, or None
        controls = [text, g[1], g[2], b[1], b[2], follow, drawn]
        shown = [follow, links, *g, *b, drawn]
        draw = on_page(make_draw(models, cache))
        draw_new = dict(fn=on_page(make_draw(models, cache, new_sentence=True)), inputs=controls, outputs=shown,
                        api_visibility="private", trigger_mode="always_last", show_progress="minimal",
                        preprocess=False)
        gr.on([show.click, text.submit], **draw_new)
        gr.on([show.click, text.submit], None, js=SCROLL_TO_MAPS, api_visibility="private")
        gr.on([g[1].input, g[2].input, b[1].input, b[2].input, follow.input], draw, inputs=controls, outputs=shown,
              api_visibility="private", trigger_mode="always_last", show_progress="hidden", preprocess=False)
        for *_, head, _, heads in columns.values():
            heads.select(pick_head, outputs=head, api_visibility="private", queue=False).then(
                draw, inputs=controls, outputs=shown, api_visibility="private", show_progress="hidden",
                preprocess=False)
        endpoint(make_attention_api(models, cache), returns=dict, api_name="attention")
        # Before the tab is opened: BERT's files looked up, never loaded, so that a missing BERT shows no controls
        tab.load(make_bert_column(models), outputs=list(b), api_visibility="private", queue=False,
                 show_progress="hidden")
    # Drawn when the tab opens, not when the page does: most visitors never look, and BERT loads on first use
    return TabParts(tab, {"text": text}, on_open=lambda tab_item: tab_item.select(**draw_new))


def pick_head(evt: gr.SelectData) -> int:
    return evt.index + 1


def gpt2_maps(models: AppModels, cache: MapCache, text: str, session: str | None) -> Maps:
    with models.use(session) as lm:
        def compute() -> Maps:
            attention = lm.attention(text)
            ends = [0]
            for token in attention.tokens:
                ends.append(ends[-1] + len(token))
            return Maps(lm.name, attention, list(zip(ends, ends[1:])))

        return cache.get(("gpt2", lm.serial, text), compute)


def bert_maps(models: AppModels, cache: MapCache, text: str) -> Maps:
    fill_mask = models.bert.get()

    def compute() -> Maps:
        attention = fill_mask.attention(text)
        spans = fill_mask.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        return Maps(fill_mask.name, attention, [tuple(s) for s in spans])

    return cache.get(("bert", id(fill_mask), text), compute)


def matching_token(spans: list[tuple[int, int]], start: int) -> int | None:
    """The token of another model that covers character `start` (BERT's pieces vs GPT-2's)."""
    return next((i for i, (s, e) in enumerate(spans) if e > s and s <= start < e), None)


def word_start(text: str, span: tuple[int, int]) -> int:
    """The first character of a token that is not a space (GPT-2's tokens carry the space before a word)."""
    start, end = span
    while start < end - 1 and text[start].isspace():
        start += 1
    return start


def make_draw(models: AppModels, cache: MapCache, *, new_sentence: bool = False):
    def draw(text: Any, g_layer: Any, g_head: Any, b_layer: Any, b_head: Any, follow: int | None,
             request: gr.Request, drawn: Drawn | None = None) -> list:
        """Both columns and the chosen word's links for the sliders' layers and heads, as sent (raw). A new sentence
        clamps them to its models' ranges; moving a slider or typing a number checks them. A refusal raises Refused,
        with the page to show: the maps stay only while they are of this text (`drawn`, what the page shows)."""
        sliders = (g_layer, g_head, b_layer, b_head)
        if not new_sentence and any(v is None or v == "" for v in sliders):  # a box emptied to type another number
            return [gr.skip()] * SHOWN
        bert = why = None
        try:
            with user_facing_errors():
                text = check_text("text", text)
                gpt2 = gpt2_maps(models, cache, text, getattr(request, "session_hash", None))
                g_layer, g_head = layer_head(gpt2, g_layer, g_head, clamp=new_sentence)
                try:
                    bert = bert_maps(models, cache, text)
                except (*LOAD_ERRORS, OSError) as e:
                    why = bert_why(models, e)
                else:
                    b_layer, b_head = layer_head(bert, b_layer, b_head, clamp=new_sentence)
        except gr.Error as e:
            raise Refused(e, refused(models, e.message, drawn, text)) from None
        tokens = gpt2.attention.tokens
        if new_sentence or follow is None or not 0 <= int(follow) < len(tokens):
            follow = default_follow(tokens)
        follow = int(follow)
        choices = [(label(t), i) for i, t in enumerate(tokens)]
        g_column, g_link = column(gpt2, g_layer, g_head, follow, causal=True)
        if bert is None:
            b_column, b_link = no_bert_column(why), ""
        else:
            b_follow = matching_token(bert.spans, word_start(text, gpt2.spans[follow]))
            b_column, b_link = column(bert, b_layer, b_head, b_follow, causal=False)
        links_text = "  \n".join(line for line in (g_link, b_link) if line)
        return [gr.Radio(choices=choices, value=follow), links_text, *g_column, *b_column,
                Drawn(text, (g_layer, g_head), None if bert is None else (b_layer, b_head))]

    return draw


class Refused(gr.Error):
    """A refused input: its message (the toast) and the page to show with it."""

    def __init__(self, error: gr.Error, page: list):
        super().__init__(error.message, print_exception=False)
        self.page = page


def on_page(draw: Callable[..., list]) -> Callable[..., Iterator[list]]:
    """`draw` as the page's event: a refusal's page is shown, then its message (an error ends an event's updates)."""
    @functools.wraps(draw)  # its signature, which tells Gradio where gr.Request goes
    def event(*args: Any) -> Iterator[list]:
        try:
            yield draw(*args)
        except Refused as refusal:
            yield refusal.page
            raise

    return event


SHOWN = 13  # the draw's outputs: the words to follow, the links, each column's 5, and Drawn


def layer_head(maps: Maps, layer: Any, head: Any, *, clamp: bool) -> tuple[int, int]:
    """The layer and head (from 1) of `maps` that a Layer and a Head slider ask for; beyond the model's, ValueError
    with the API's message (naming `layer` or `head` and the range), or with `clamp` the nearest (an emptied box: 1)."""
    n_layer, n_head = maps.attention.weights.shape[:2]
    asked = []
    for value, high in ((layer, n_layer), (head, n_head)):
        if isinstance(value, float) and value.is_integer():  # JSON numbers: 3.0 is 3
            value = int(value)
        if clamp and value is None:
            value = 1
        if clamp and isinstance(value, int) and not isinstance(value, bool):
            value = min(max(value, 1), high)
        asked.append(value)
    layer, head = asked
    check_layer_head(layer, head, maps.attention.weights, model=maps.model)
    return layer, head


def refused(models: AppModels, message: str, drawn: Drawn | None, text: Any) -> list:
    """The page after a refusal with `message` (as the toast has it): the maps as drawn if they are of `text`, their
    sliders put back; else no maps, no words to follow and the message in the links' place, for a class never to read
    a picture of another text. Each column's heading (its model) and sliders stay, and BERT's reason where it is
    missing."""
    keep = [gr.skip()] * 5
    if drawn is not None and drawn.text == text:
        g_layer, g_head = drawn.gpt2
        b_column = keep if drawn.bert is None else [gr.skip(), gr.Slider(value=drawn.bert[0]),
                                                      gr.Slider(value=drawn.bert[1]), gr.skip(), gr.skip()]
        return [gr.skip(), gr.skip(), gr.skip(), gr.Slider(value=g_layer), gr.Slider(value=g_head), gr.skip(),
                gr.skip(), *b_column, gr.skip()]
    cleared = [gr.skip(), gr.skip(), gr.skip(), "", gr.Gallery(None)]
    b_column = keep if bert_missing(models) is not None else cleared
    return [gr.Radio(choices=[], value=None), "\u26a0\ufe0f " + message_markdown(message), *cleared, *b_column, None]


def make_bert_column(models: AppModels):
    def bert_column() -> list:
        """BERT's column as the page opens: why BERT is missing, or left as it is (drawn when the tab opens)."""
        missing = bert_missing(models)
        return [gr.skip()] * 5 if missing is None else no_bert_column(missing.text)

    return bert_column


def bert_why(models: AppModels, error: Exception) -> str:
    """Why BERT's load failed, with BERT's fix (a missing folder's own error would name GPT-2's)."""
    missing = bert_missing(models)
    return missing.text if missing is not None else str(error)


def no_bert_column(why: str) -> list:
    """(heading, layer slider, head slider, map, head pictures) without BERT: the reason, and no controls."""
    return ["#### " + tr(BERT_KIND), gr.Slider(visible=False), gr.Slider(visible=False),
            f"<p class='unavailable'>{tr('BERT is not available: {why}', why=as_html(why))}</p>",
            gr.Gallery(None, visible=False)]


def default_follow(tokens: list[str]) -> int:
    """The word to follow first: "it" when the sentence has one (attention's classic example), else the last word."""
    stripped = [t.strip().lower() for t in tokens]
    if "it" in stripped:
        return stripped.index("it")
    return max((i for i, t in enumerate(stripped) if any(c.isalnum() for c in t)), default=len(tokens) - 1)


def column(maps: Maps, layer: int, head: int, follow: int | None, *, causal: bool) -> tuple[list, str]:
    """(heading, layer slider, head slider, map, head pictures) of one model, and its chosen word's links; `layer`
    and `head` as layer_head gives them."""
    weights = maps.attention.weights
    n_layer, n_head = weights.shape[:2]
    tokens = maps.attention.tokens
    kind = tr(GPT2_KIND if causal else BERT_KIND)
    title = tr("{kind}, layer {layer}, head {head}", kind=kind, layer=layer, head=head)
    svg = heatmap_svg(tokens, weights[layer - 1, head - 1], causal=causal, selected=follow, title=title)
    pictures = [(picture, tr("head {n} (shown)", n=h + 1) if h + 1 == head else tr("head {n}", n=h + 1))
                for h, picture in enumerate(head_pictures(weights[layer - 1], causal=causal))]
    link = ""
    if follow is not None:
        top = strongest_links(weights[layer - 1, head - 1], follow, k=LINKS)
        looks = ", ".join(f"**{isolated(label(tokens[j]))}** ({number(w, '.0%')})" for j, w in top)
        link = tr("**{name}** (`{model}`, layer {layer}, head {head}): **{word}** looks most at {looks}.",
                  name="GPT-2" if causal else "BERT", model=maps.model, layer=layer, head=head,
                  word=isolated(label(tokens[follow])), looks=looks)
    return ["#### " + tr("{kind} \u00b7 `{model}`, {layers} layers \u00d7 {heads} heads", kind=kind, model=maps.model,
                         layers=n_layer, heads=n_head),
            gr.Slider(maximum=n_layer, value=layer, visible=True), gr.Slider(maximum=n_head, value=head, visible=True),
            svg, gr.Gallery(pictures, visible=True)], link


def isolated(token: str) -> str:
    """A token for a sentence of the page, in Unicode's isolates (FSI ... PDI): an Arabic or Hebrew token takes its
    own direction without reordering the sentence's percentages and commas around it."""
    return "\u2068" + markdown_text(token) + "\u2069"


def make_attention_api(models: AppModels, cache: MapCache):
    def attention(text: str = DEFAULT_SENTENCE, layer: int = 1, head: int = 1,
                  request: gr.Request | None = None) -> dict:
        """Both models' tokens and the attention of one layer and head (from 1): weights[i][j] is how much token i
        looks at token j. BERT's part holds an "error" instead when BERT cannot be had or has no such head."""
        with user_facing_errors():
            text = check_text("text", text)
            gpt2 = gpt2_maps(models, cache, text, getattr(request, "session_hash", None))
            check_layer_head(layer, head, gpt2.attention.weights, model=gpt2.model)
            result = {"gpt2": one_head(gpt2, layer, head)}
            try:
                bert = bert_maps(models, cache, text)
            except (*LOAD_ERRORS, OSError) as e:
                return {**result, "bert": {"error": bert_why(models, e)}}
            try:
                check_layer_head(layer, head, bert.attention.weights, model=bert.model)
                result["bert"] = one_head(bert, layer, head)
            except ValueError as e:
                result["bert"] = {"error": str(e)}
        return result

    return attention


def one_head(maps: Maps, layer: int, head: int) -> dict:
    weights = maps.attention.weights[layer - 1, head - 1]
    return {"model": maps.model, "layer": layer, "head": head, "tokens": maps.attention.tokens,
            "weights": [[round(float(w), 5) for w in row] for row in weights]}
