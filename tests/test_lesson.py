"""The guided lesson (demo/lesson_steps.py, demo/lesson_tab.py): its steps as data, `?lesson=N` and `lock=1` links,
and what a step says where its tab cannot run. In the browser: test_browser_lesson.py."""

from __future__ import annotations

import re
from types import SimpleNamespace

import gradio as gr
import pytest

from demo.examples import load_examples
from demo.lesson_steps import STEPS
from demo.lesson_tab import StepView
from demo.links import FIELDS, LOCKED_INFO, TABS, TabParts, link_values, note_markdown, opens_a_tab, read_link

LABELS = {tab: tab.title() for tab in TABS}


def sentences(text: str) -> int:
    return len(re.findall(r"[.!?](?:\s|$)", text))


def test_the_lesson_has_8_to_12_steps_each_one_idea_one_action_one_question():
    assert 8 <= len(STEPS) <= 12
    for step in STEPS:
        assert step.title and len(step.title) <= 30, step.title
        assert 1 <= sentences(step.idea) <= 3, step.idea
        assert step.action.strip() and step.notice.strip()
        assert step.question.endswith("?"), step.question
    assert len({step.title for step in STEPS}) == len(STEPS)


def test_the_steps_tell_the_story_in_order_each_in_a_tab_that_exists():
    assert [step.tab for step in STEPS] == ["score", "explore", "explore", "generate", "generate", "inside", "layers",
                                            "scale", "train", "score"]
    assert all(step.tab in TABS and step.tab != "lesson" for step in STEPS)
    assert "temperature" in STEPS[2].idea.lower() and "seed" in STEPS[3].idea.lower()
    assert "triangle" in STEPS[5].idea and "square" in STEPS[5].idea


@pytest.mark.parametrize("number", range(1, len(STEPS) + 1))
def test_each_step_fills_its_tab_through_a_share_link_that_the_page_accepts(number):
    step = STEPS[number - 1]
    link = read_link(step.query)
    assert link.problems == [] and link.tab == step.tab
    assert set(link.values) == set(step.link) <= set(FIELDS[step.tab])
    assert link.values, f"step {number} opens {step.tab} prefilled"


def test_the_scale_step_runs_the_unicorns_and_spot_the_machine_starts_from_a_persons_text():
    from demo.scale_tab import DEFAULT_SEED

    examples = load_examples()
    by_tab = {step.tab: read_link(step.query).values for step in STEPS[7:]}
    assert by_tab["scale"] == {"prompt": examples.unicorn.prompt, "seed": DEFAULT_SEED}
    assert by_tab["train"] == {"minutes": 2}
    assert by_tab["score"] == {"text": examples.human[0].text}
    assert read_link({"tab": "train", "minutes": "11"}).problems == [
        "`minutes` has to be an integer in [1, 10], but is 11"]


def test_the_unicorns_step_is_the_preset_with_its_fixed_seed():
    unicorn = load_examples().unicorn
    step = next(step for step in STEPS if "unicorn" in step.title.lower())
    values = read_link(step.query).values
    assert values["prompt"] == unicorn.prompt
    settings = unicorn.settings
    assert values == dict(prompt=unicorn.prompt, max_new_tokens=settings.max_new_tokens,
                          temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                          repetition_penalty=settings.repetition_penalty, seed=2019, num_samples=settings.num_samples)


def test_the_layers_step_watches_paris_after_the_eiffel_tower():
    step = next(step for step in STEPS if step.tab == "layers")
    assert step.link == {"text": "The Eiffel Tower is in the city of", "target": " Paris"}


# ---- ?lesson=N and lock=1 -------------------------------------------------------------------------------------------
def test_a_lesson_link_opens_the_lesson_tab_at_its_step():
    link = read_link({"lesson": "3"})
    assert (link.tab, link.values, link.problems) == ("lesson", {"lesson": 3}, [])
    assert opens_a_tab({"lesson": "3"}) and not opens_a_tab({"prompt": "Hi"})
    assert read_link({"tab": "lesson", "lesson": str(len(STEPS)), "lock": "1"}).values == {
        "lesson": len(STEPS), "lock": True}


@pytest.mark.parametrize("raw", ["0", str(len(STEPS) + 1), "-1", "2.5", "three", ""])
def test_a_bad_step_number_is_named_with_the_allowed_range_and_the_lesson_opens_at_its_start(raw):
    link = read_link({"lesson": raw})
    assert link.tab == "lesson" and link.values == {}  # the Radio keeps step 1
    (problem,) = link.problems
    assert problem.startswith(f"`lesson` has to be an integer in [1, {len(STEPS)}], but is ")
    assert "lesson" in note_markdown(link.problems)


def test_lock_is_1_or_0_and_belongs_to_the_lesson():
    assert read_link({"lesson": "2", "lock": "1"}).values["lock"] is True
    assert read_link({"lesson": "2", "lock": "0"}).values["lock"] is False
    assert read_link({"lesson": "2", "lock": "yes"}).problems == [
        "`lock` has to be 1 (the lesson's texts locked) or 0, but is 'yes'"]
    assert read_link({"tab": "generate", "lock": "1"}).problems == [
        "`lock` is not a setting of this tab, so it was ignored"]


def tabs_for_links() -> dict[str, TabParts]:
    """Stand-ins for the page's tabs: each linkable input a component (never rendered)."""
    def component(kind: str):
        return gr.Textbox(render=False) if kind == "text" else gr.Number(render=False)

    return {tab: TabParts(gr.Blocks(), {name: component(kind) for name, kind in FIELDS[tab].items()})
            for tab in TABS}


def test_a_locked_lesson_makes_the_texts_it_fills_read_only_and_says_so_but_not_the_settings():
    tabs = tabs_for_links()
    step = STEPS[3]  # sampling and seeds: a prompt and settings in Generate
    names = [(tab, name) for tab, parts in tabs.items() for name in parts.inputs]
    locked = dict(zip(names, link_values(read_link(step.query), tabs, locked=True), strict=True))
    prompt = locked["generate", "prompt"]
    assert prompt["value"] == step.link["prompt"] and prompt["interactive"] is False
    assert prompt["info"] == LOCKED_INFO and "teacher" in LOCKED_INFO
    assert locked["generate", "seed"] == 42 and locked["generate", "temperature"] == 1  # free to move
    assert all(isinstance(v, type(gr.skip())) for (tab, _), v in locked.items() if tab != "generate")
    unlocked = dict(zip(names, link_values(read_link(step.query), tabs), strict=True))
    assert unlocked["generate", "prompt"] == step.link["prompt"]  # a plain value: the box stays editable


# ---- a step whose tab cannot run here -------------------------------------------------------------------------------
def models_with_bert(source: str, *, loaded: bool = False):
    return SimpleNamespace(bert=SimpleNamespace(loaded=loaded, source=source, error=None), public=False,
                           gpt2=SimpleNamespace(current=None))


def test_a_step_whose_tab_cannot_run_here_says_why_instead_of_offering_its_button():
    from functools import partial

    from demo.i18n import speaking, tables
    from demo.unavailable import not_available
    from gpt2_core.backend import ATTENTION
    from gpt2_core.remote.model import REMOTE_UNAVAILABLE

    reason = REMOTE_UNAVAILABLE[ATTENTION]
    why = partial(not_available, reason, "with this model server")  # as app.py gives it: written when asked
    view = StepView.of(6, models_with_bert("bert", loaded=True), LABELS, {"inside": why})
    assert not view.can_open and why() in view.why and "Inside" in view.why
    assert "Try it." in view.card  # no "in Inside": nothing opens
    with speaking("fr"):  # the line in the request's language, whole (it was half a browser's marker)
        french = StepView.of(6, models_with_bert("bert", loaded=True), LABELS, {"inside": why})
    assert tables()["fr"][reason] in french.why and "__i18n__" not in french.why
    fine = StepView.of(2, models_with_bert("bert", loaded=True), LABELS, {"inside": why})
    assert fine.can_open and fine.why == "" and fine.open_label == "Open in Explore"


def test_the_attention_step_without_bert_still_opens_and_says_bert_is_missing(tmp_path):
    view = StepView.of(6, models_with_bert(str(tmp_path / "no-bert")), LABELS, {})
    assert view.can_open and "BERT" in view.why and "does not exist" in view.why
    assert StepView.of(6, models_with_bert("bert", loaded=True), LABELS, {}).why == ""


def test_the_counter_and_a_value_out_of_range_fall_back_to_the_first_step():
    models = models_with_bert("bert", loaded=True)
    assert StepView.of(3, models, LABELS, {}).counter == f"Step 3 of {len(STEPS)}"
    assert StepView.of(None, models, LABELS, {}).number == 1
    assert StepView.of(99, models, LABELS, {}).number == 1
