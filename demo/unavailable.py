"""A tab whose feature the GPT-2 backend cannot give (attention, training or sizes from a remote model server): the
tab's introduction and the reason, where its controls would be. Its API endpoint, if it has one, still exists and
answers with the same reason, so a script learns why rather than that the name is unknown.
"""

from __future__ import annotations

import gradio as gr

from demo.errors import as_text, markdown_text
from demo.links import TabParts


def unavailable_tab(intro: str, reason: str, *, elem_id: str, api_name: str | None = None,
                    api_inputs: tuple[str, ...] = ()) -> TabParts:
    with gr.Blocks() as tab:
        gr.Markdown(intro)
        gr.Markdown(f"**Not available with this model server:** {markdown_text(reason)}", elem_id=elem_id)
        if api_name is not None:
            inputs = [gr.Textbox(visible=False, label=name) for name in api_inputs]
            answer = gr.JSON(visible=False)
            trigger = gr.Button(visible=False)

            def refuse(*_values):
                raise gr.Error(as_text(f"{api_name} is not available with this model server: {reason}"),
                               print_exception=False)

            trigger.click(refuse, inputs=inputs, outputs=answer, api_name=api_name, preprocess=False)
    return TabParts(tab, {})
