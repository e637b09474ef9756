"""The BERT vs GPT-2 tab: one sentence with a blank, and three bar charts of what each model makes of it.

BERT fills in blanks; GPT-2 writes essays. The Compare button is the `/compare` API endpoint (parameter: sentence).
BERT is loaded the first time someone compares (the rest of the app does not wait for it). When it cannot be had
(offline, not downloaded), the tab says so as it opens, and Compare still draws GPT-2's next words, which need only
GPT-2; BERT's chart and the ranking of BERT's words say why they are empty.
"""

from __future__ import annotations

import gradio as gr

from demo.errors import markdown_text, user_facing_errors
from demo.examples import Examples
from demo.i18n import T, tr
from demo.links import TabParts, copy_link
from demo.models import LOAD_ERRORS, AppModels
from demo.save_view import save_png_button
from demo.unavailable import as_markdown, bert_missing
from gpt2_core.bert.compare import Comparison, compare, gpt2_next_words, split_blank

TOP_WORDS = 8
BERT_TITLE = "BERT: words for the blank (reads both sides)"  # i18n: key
RANKING_TITLE = "GPT-2: BERT's words ranked by how likely the whole sentence is"  # i18n: key

INTRO = """\
### BERT fills in blanks; GPT-2 writes essays
**BERT** is *bidirectional*: it reads the whole sentence at once, the words **left and right** of the blank, \
and guesses the missing word. **GPT-2** reads **left to right**: to guess the next word it only has the words \
before it, which is exactly what it needs to write text one word after another.
Write a sentence with one blank (`___` or `[MASK]`) where the words *after* the blank decide the answer, and compare.
"""  # i18n: key


def compare_tab(models: AppModels, examples: Examples) -> TabParts:
    with gr.Blocks() as tab:
        bert_note = gr.Markdown(visible=False, elem_id="compare-bert-missing")  # filled as the page opens
        gr.Markdown(T(INTRO))
        with gr.Row(equal_height=True):
            sentence = gr.Textbox(label=T("Sentence with one blank"), value=examples.compare[0], scale=4,
                                  elem_id="sentence", placeholder=T("The ___ barked at the mailman all morning."))
            button = gr.Button(T("Compare"), variant="primary", scale=1, elem_id="compare-button")
        gr.Examples(examples=[[s] for s in examples.compare], inputs=[sentence], label=T("Sentences to try"))
        copy_link("compare", {"sentence": sentence})
        seen = gr.Markdown(label=T("what each model read"), elem_id="what-each-saw")
        with gr.Row(equal_height=True):
            with gr.Column(min_width=240):
                bert = chart(T(BERT_TITLE), "bert-chart")
                bert_why = gr.Markdown(visible=False, container=True, elem_id="bert-chart-why")
                bert_save = save_chart("bert-chart")
            with gr.Column(min_width=240):
                gpt2_next = chart(T("GPT-2: next word after the left side (reads left to right)"), "gpt2-next-chart")
                save_chart("gpt2-next-chart")
            with gr.Column(min_width=240):
                gpt2_ranking = chart(T(RANKING_TITLE), "gpt2-ranking-chart")
                ranking_why = gr.Markdown(visible=False, container=True, elem_id="gpt2-ranking-why")
                ranking_save = save_chart("gpt2-ranking-chart")
        gr.Markdown(T("Bars are probabilities. The third chart puts each of BERT's words into the blank and asks GPT-2 "
                      "how likely the finished sentence is, shared out among the candidates: GPT-2 can judge a whole "
                      "sentence, it just cannot peek ahead while writing."))
        results = [bert, gpt2_next, gpt2_ranking, seen]
        bert_side = [bert, bert_why, bert_save, gpt2_ranking, ranking_why, ranking_save]
        show_bert = dict(fn=make_show_bert(models, bert_note, *bert_side), outputs=[bert_note, *bert_side],
                         api_visibility="private", queue=False, show_progress="hidden")
        tab.load(**show_bert)  # looks BERT's files up, never loads them: the page does not wait for BERT
        for trigger, api in ((button.click, dict(api_name="compare")), (sentence.submit, dict(api_visibility="private"))):
            # The last sentence's results go first, so that an error never stands beside them as if they were its own.
            trigger(lambda: (None, None, None, ""), outputs=results, api_visibility="private", queue=False).then(
                make_compare(models), inputs=sentence, outputs=results, concurrency_limit=4, **api).then(**show_bert)
    return TabParts(tab, {"sentence": sentence})


def chart(label: str, elem_id: str) -> gr.Label:
    """A bar chart of words and their probabilities (gr.Label draws one bar per word, with its percentage)."""
    return gr.Label(label=label, num_top_classes=TOP_WORDS, show_heading=False, elem_id=elem_id, elem_classes="chart")


def save_chart(elem_id: str) -> gr.Button:
    """Its Save as PNG: the chart under its title, with what each model read and which models (demo/save_view.py)."""
    return save_png_button(elem_id, file=f"gpt2-vs-bert-{elem_id}.png", caption=["{#what-each-saw}"],
                           needs=".confidence-set")


def make_show_bert(models: AppModels, note: gr.Markdown, bert: gr.Label, bert_why: gr.Markdown, bert_save: gr.Button,
                   ranking: gr.Label, ranking_why: gr.Markdown, ranking_save: gr.Button):
    def show_bert() -> dict:
        """BERT's charts, or why BERT is missing: in a line on top of the tab and where its charts would be (with no
        Save as PNG under a chart that cannot be drawn)."""
        missing = bert_missing(models)
        if missing is None:
            return {note: gr.Markdown(visible=False), bert: gr.Label(visible=True),
                    bert_why: gr.Markdown(visible=False), bert_save: gr.Button(visible=True),
                    ranking: gr.Label(visible=True), ranking_why: gr.Markdown(visible=False),
                    ranking_save: gr.Button(visible=True)}
        where_fix = " " + tr("The fix is at the top of this tab.") if missing.fix else ""
        sentence = missing.text[:1].upper() + missing.text[1:]  # after the bold lead (gpt2_core's begin "model ...")
        return {note: gr.Markdown(tr("**BERT is missing here, so this tab shows GPT-2's side only.**") + " "
                                  + as_markdown(sentence), visible=True),
                bert: gr.Label(visible=False),
                bert_why: gr.Markdown(f"**{tr(BERT_TITLE)}**\n\n"
                                      + tr("Not available: {why}", why=as_markdown(missing.problem)) + where_fix,
                                      visible=True),
                bert_save: gr.Button(visible=False), ranking: gr.Label(visible=False),
                ranking_save: gr.Button(visible=False),
                ranking_why: gr.Markdown(f"**{tr(RANKING_TITLE)}**\n\n"
                                         + tr("This chart ranks BERT's words, so it needs BERT too."), visible=True)}

    return show_bert


def make_compare(models: AppModels):
    def compare_models(sentence: str, request: gr.Request) -> tuple[dict | None, dict, dict | None, str]:
        """BERT's words for the blank, GPT-2's next words after the left side, GPT-2's ranking of BERT's words.
        Without BERT: GPT-2's next words only; BERT's and the ranking are None."""
        with user_facing_errors(), models.use(request.session_hash) as lm:
            left, _right = split_blank(sentence)  # a sentence without its one blank fails before BERT is loaded for it
            try:
                fill_mask = models.bert.get()
            except (*LOAD_ERRORS, OSError):  # why: the tab says it at its top (make_show_bert)
                next_words = gpt2_next_words(lm, left, k=TOP_WORDS)
                return (None, dict(next_words), None, tr("**BERT read:** nothing: BERT is missing here.") + "  \n"
                        + gpt2_read(left) + "  \n" + tr("**Model:** GPT-2 `{name}`", name=lm.name))
            result = compare(sentence, fill_mask=fill_mask, lm=lm, k=TOP_WORDS)
            models_used = "  \n" + tr("**Models:** GPT-2 `{gpt2}`, BERT `{bert}`", gpt2=lm.name, bert=fill_mask.name)
            return (dict(result.bert), dict(result.gpt2_next), dict(result.gpt2_ranking),
                    what_each_saw(result) + models_used)

    return compare_models


def what_each_saw(result: Comparison) -> str:
    return (tr("**BERT read:** {left}**[MASK]**{right}", left=markdown_text(result.left), right=markdown_text(result.right))
            + "  \n" + gpt2_read(result.left))


def gpt2_read(left: str) -> str:
    return tr("**GPT-2 read:** {left} **\u2026** (nothing after the blank)",
              left=markdown_text(left.rstrip() or tr("(the start of a text)")))

