"""The whole page: the model panel on top, then the tabs (Generate, Next word, Spot the machine, BERT vs GPT-2), each
built in its module.

    demo = build_demo(AppConfig.from_env_and_args())        # loads GPT-2 (or notes why it cannot)
    demo.launch(**config.launch_kwargs())

Tests pass `models=start_models(config, load_gpt2=..., load_bert=...)` to build on tiny checkpoints.
"""

from __future__ import annotations

import gradio as gr

from demo import tokens
from demo.compare_tab import compare_tab
from demo.config import AppConfig
from demo.examples import load_examples
from demo.explore_tab import explore_tab
from demo.generate_tab import generate_tab
from demo.knobs import REMEMBER_TYPED
from demo.model_panel import model_panel
from demo.models import AppModels, start_models
from demo.score_tab import score_tab

TITLE = "GPT-2 Playground"
CSS = """
#model-unavailable { border: 2px solid #dc2626; border-radius: 8px; padding: 0 1rem; background: #fef2f2; }
.chart .bar { height: 14px; min-width: 3px; }  /* gr.Label's bars, thick enough to read from the back row */
#title h1 { margin: 0; font-size: 1.6rem; }
#title p { margin: 0; }
#run-state { font-size: 18px; min-height: 1.6em; }
""" + tokens.CSS


def build_demo(config: AppConfig, *, models: AppModels | None = None) -> gr.Blocks:
    models = models or start_models(config)
    examples = load_examples()
    panel = model_panel(models, allow_switch=config.model_switch_allowed)  # built apart, placed with .render()
    tabs = [("Generate", "generate", generate_tab(models, examples, deadline_s=config.deadline_s)),
            ("Next word", "explore", explore_tab(models)),
            ("Spot the machine", "score", score_tab(models, examples)),
            ("BERT vs GPT-2", "compare", compare_tab(models, examples))]
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\nOpenAI's GPT-2 (2019) writes one token at a time, each drawn from its predicted "
                    "probabilities: see which, and why.", elem_id="title")
        panel.render()
        for label, tab_id, tab in tabs:
            with gr.Tab(label, id=tab_id):
                tab.render()
    # Beyond the running events (Generate 16, Compare 4, others 4 at a time), `queue_size` more may wait; the next
    # visitor is told at once "This application is currently busy. Please try again." (Gradio's text for a full queue).
    demo.queue(default_concurrency_limit=4, max_size=config.queue_size)
    return demo


def launch_options() -> dict:
    """Look of the page, passed to launch() (Gradio 6 takes theme and CSS there); fonts are served locally."""
    theme = gr.themes.Default(text_size="lg").set(
        block_info_text_color="*neutral_600",  # the settings' explanations, readable on a projector
        block_label_text_color="*neutral_800",
        block_label_text_weight="600",
    )
    return dict(theme=theme, css=CSS, js=REMEMBER_TYPED)
