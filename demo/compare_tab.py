"""The BERT vs GPT-2 tab: one sentence with a blank, and three bar charts of what each model makes of it.

BERT fills in blanks; GPT-2 writes essays. The Compare button is the `/compare` API endpoint (parameter: sentence).
BERT is loaded the first time someone compares (the rest of the app does not wait for it).
"""

from __future__ import annotations

import gradio as gr

from demo.errors import markdown_text, user_facing_errors
from demo.examples import Examples
from demo.links import TabParts, copy_link
from demo.models import AppModels
from gpt2_core.bert.compare import Comparison, compare, split_blank

TOP_WORDS = 8

INTRO = """\
### BERT fills in blanks; GPT-2 writes essays
**BERT** is *bidirectional*: it reads the whole sentence at once, the words **left and right** of the blank, \
and guesses the missing word. **GPT-2** reads **left to right**: to guess the next word it only has the words \
before it, which is exactly what it needs to write text one word after another.
Write a sentence with one blank (`___` or `[MASK]`) where the words *after* the blank decide the answer, and compare.
"""


def compare_tab(models: AppModels, examples: Examples) -> TabParts:
    with gr.Blocks() as tab:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            sentence = gr.Textbox(label="Sentence with one blank", value=examples.compare[0], scale=4,
                                  elem_id="sentence", placeholder="The ___ barked at the mailman all morning.")
            button = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-button")
        gr.Examples(examples=[[s] for s in examples.compare], inputs=[sentence], label="Sentences to try")
        copy_link("compare", {"sentence": sentence})
        seen = gr.Markdown(label="what each model read", elem_id="what-each-saw")
        with gr.Row(equal_height=True):
            bert = chart("BERT: words for the blank (reads both sides)", "bert-chart")
            gpt2_next = chart("GPT-2: next word after the left side (reads left to right)", "gpt2-next-chart")
            gpt2_ranking = chart("GPT-2: BERT's words ranked by how likely the whole sentence is",
                                 "gpt2-ranking-chart")
        gr.Markdown("Bars are probabilities. The third chart puts each of BERT's words into the blank and asks GPT-2 "
                    "how likely the finished sentence is, shared out among the candidates: GPT-2 can judge a whole "
                    "sentence, it just cannot peek ahead while writing.")
        results = [bert, gpt2_next, gpt2_ranking, seen]
        for trigger, api in ((button.click, dict(api_name="compare")), (sentence.submit, dict(api_visibility="private"))):
            # The last sentence's results go first, so that an error never stands beside them as if they were its own.
            trigger(lambda: (None, None, None, ""), outputs=results, api_visibility="private", queue=False).then(
                make_compare(models), inputs=sentence, outputs=results, concurrency_limit=4, **api)
    return TabParts(tab, {"sentence": sentence})


def chart(label: str, elem_id: str) -> gr.Label:
    """A bar chart of words and their probabilities (gr.Label draws one bar per word, with its percentage)."""
    return gr.Label(label=label, num_top_classes=TOP_WORDS, show_heading=False, elem_id=elem_id, elem_classes="chart")


def make_compare(models: AppModels):
    def compare_models(sentence: str, request: gr.Request) -> tuple[dict, dict, dict, str]:
        """BERT's words for the blank, GPT-2's next words after the left side, GPT-2's ranking of BERT's words."""
        with user_facing_errors(), models.use(request.session_hash) as lm:
            split_blank(sentence)  # a sentence without its one blank fails before BERT is loaded for it
            fill_mask = models.bert.get()
            result = compare(sentence, fill_mask=fill_mask, lm=lm, k=TOP_WORDS)
            models_used = f"  \n**Models:** GPT-2 `{lm.name}`, BERT `{fill_mask.name}`"
            return (dict(result.bert), dict(result.gpt2_next), dict(result.gpt2_ranking),
                    what_each_saw(result) + models_used)

    return compare_models


def what_each_saw(result: Comparison) -> str:
    left = result.left.rstrip() or "(the start of a text)"
    return (f"**BERT read:** {markdown_text(result.left)}**[MASK]**{markdown_text(result.right)}  \n"
            f"**GPT-2 read:** {markdown_text(left)} **\u2026** (nothing after the blank)")

