"""The page in the class's language (demo/i18n.py): the tables, the choice of language, and the guard that fails when
a string a user can see is added outside the tables.

Two checks find such strings:
- in the built page: every label, help text, placeholder, Markdown, HTML, button and choice of every component is
  a key of the tables (or has no words: numbers, symbols, names from NAMES);
- in the source: every string literal in demo/ with two words or more is inside `T(...)` / `tr(...)` (whose text
  must then be in every table), or sits in code that is never shown (docstrings, logging, element ids, JS and CSS),
  or its line says `# i18n: key` (a text translated where it is used; it must be in the tables too),
  `# i18n: not shown` (an API field, a host's log line, a file name) or `# i18n: model text` (an input for GPT-2 or
  BERT, which read English: an example sentence, a starting text).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from demo import i18n
from demo.i18n import LANGUAGES, T, choose_language, speaking, tables, tr

pytest_plugins = ["fixtures_ui"]

DEMO = Path(__file__).resolve().parent.parent / "demo"
# demo/config.py is the host's command line and environment: its help and errors are for the host's console
NOT_ON_THE_PAGE = {"config.py", "i18n.py"}
MODULES = sorted(p.name for p in DEMO.glob("*.py") if p.name not in NOT_ON_THE_PAGE)
WORDS = re.compile(r"[A-Za-z]{2,}[,.;:!?'’)]*\s+\(?[A-Za-z]{2,}")
NEVER_SHOWN_KEYWORDS = {"elem_id", "elem_classes", "js", "css", "api_name", "api_visibility", "key", "variant",
                        "show_progress", "head", "trigger_mode", "concurrency_id", "format", "file_types",
                        "type", "sort", "color", "x", "y"}
NEVER_SHOWN_NAMES = re.compile(r"(JS|CSS|SCRIPT|PATTERN|RE)$|^_?[A-Z_]*(JS|CSS)_")
LOGGING = {"log", "logging", "logger", "warnings"}
# Names and symbols the page shows as they are, in every language
NAMES = {"EN", "ES", "FR", "GPT", "BERT", "Playground", "OpenAI", "Google", "English", "Español", "Français",
         "Hugging", "Face", "vLLM", "token", "tokens",
         "KV", "PNG", "HTML", "JSON", "API", "CPU", "GPU", "Shakespeare", "Macbeth", "int8", "fp32", "bf16", "top",
         "distilgpt2", "gpt2", "medium", "large", "xl", "mini", "tok", "ms", "MiB", "GiB", "MB", "GB"}


# ---- the tables and the choice of language ------------------------------------------------------------------------


def test_every_table_file_holds_only_the_pages_languages_and_translates_each_text_once():
    assert LANGUAGES.keys() == {"en", "es", "fr"}
    merged = tables()
    assert set(merged) == {"es", "fr"}
    for path in sorted(i18n.LOCALES.glob("*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        assert set(entries) == {"es", "fr"}, path.name
        assert set(entries["es"]) == set(entries["fr"]), f"{path.name}: es and fr translate different texts"
        for language, table in entries.items():
            for english, translated in table.items():
                assert translated.strip(), f"{path.name}: an empty {language} translation of {english!r}"
                assert fields(english) == fields(translated), f"{path.name} {language}: {english!r} -> {translated!r}"


def test_spanish_and_french_texts_write_decimals_with_a_comma():
    """As the page writes numbers (written_as): "temperatura 0,7", not "0.7" (the lesson's steps had it), outside
    code (`...`) and fields ({...})."""
    english_decimal = re.compile(r"(?<![\w.,{])\d+\.\d{1,2}(?![\w.}])")  # (50.257: Spanish thousands)
    for language, table in tables().items():
        for translated in table.values():
            prose = re.sub(r"`[^`]*`|\{[^{}]*\}", "", translated)
            assert not english_decimal.search(prose), f"{language}: {translated!r}"


def fields(text: str) -> list[str]:
    return sorted(re.findall(r"\{(\w*)[^{}]*\}", text))


@pytest.mark.parametrize(("query", "header", "expected"), [
    ({}, "", "en"),
    ({}, "es-ES,es;q=0.9,en;q=0.8", "es"),
    ({}, "de-DE,de;q=0.9,fr;q=0.8,en;q=0.7", "fr"),  # the first the page has
    ({}, "en;q=0.5,fr", "fr"),  # by weight, not order
    ({"lang": "es"}, "fr-FR", "es"),  # the link wins
    ({"lang": "ES"}, "", "es"),
    ({"lang": "de"}, "fr", "fr"),  # a language the page lacks: the browser's
    ({"lang": "xx"}, "", "en"),
])
def test_the_language_is_the_links_then_the_browsers_then_english(query, header, expected):
    assert choose_language(query, header) == expected


def test_tr_translates_for_the_language_being_spoken_and_fills_fields():
    english = next(iter(tables()["es"]))
    assert tr(english) == english  # outside a request: English
    with speaking("es"):
        assert tr(english) == tables()["es"][english]
        assert tr("A text no table has") == "A text no table has"  # an entry missing shows the English
    with speaking("fr"):
        assert tr(english) == tables()["fr"][english]
    with pytest.raises(ValueError, match="`lang` has to be one of"):
        with speaking("de"):
            pass


@pytest.mark.parametrize("language, written", [
    ("en", ["50,257", "1,558", "12,345.6", "97%", "0.5%", "3.50", "-1,234.5"]),
    # Spanish groups no four-digit whole number (CLDR, RAE): 1558, but 50.257
    ("es", ["50.257", "1558", "12.345,6", "97\u00a0%", "0,5\u00a0%", "3,50", "-1234,5"]),
    ("fr", ["50\u202f257", "1\u202f558", "12\u202f345,6", "97\u202f%", "0,5\u202f%", "3,50", "-1\u202f234,5"]),
])
def test_numbers_are_written_as_the_pages_language_writes_them(language, written):
    """A Spanish class read "1,558M parameters" as one and a half million: each language's own marks."""
    values = [(50257, ","), (1558, ","), (12345.6, ",.1f"), (0.97, ".0%"), (0.005, ".1%"), (3.5, ".2f"),
              (-1234.5, ",.1f")]
    with speaking(language):
        assert [i18n.number(v, spec) for v, spec in values] == written
        # a number in a field of tr is written the same way; a text in a field is left as it is
        assert tr("{a:,.1f} {b:.0%} {c}", a=12345.6, b=0.97, c="1,5.0") == f"{written[2]} {written[3]} 1,5.0"


def test_sizes_are_written_with_each_languages_units_also_in_gpt2_cores_messages():
    from demo.model_panel import bytes_text
    from demo.scale_tab import reason
    from gpt2_core.scale import plan

    note = plan(["gpt2-xl"], budget_bytes=10**12, precision="int8-cpu").pop().skip  # not downloaded here
    assert note.endswith("fetches it; it would take 1.57 GB of memory in int8 (fast on CPU)"), note
    said = {}
    for language in ("en", "es", "fr"):
        with speaking(language):
            said[language] = bytes_text(1_570_000_000), bytes_text(497_000_000), reason(note)
    assert said["en"] == ("1.57 GB", "497 MB", note)
    assert said["es"][:2] == ("1,57 GB", "497 MB") and "lo descarga; ocuparía 1,57 GB de memoria en int8" in said["es"][2]
    assert said["fr"][:2] == ("1,57 Go", "497 Mo") and "le télécharge ; il occuperait 1,57 Go de mémoire en int8" in said["fr"][2]


@pytest.mark.parametrize("language, title", [("en", "Error"), ("es", "Error"), ("fr", "Erreur")])
def test_an_error_toast_is_titled_in_the_pages_language(language, title, monkeypatch):
    """Gradio titles every error toast "Error": a French page read "Error" above its French message."""
    import gradio as gr

    from demo.errors import page_info, user_facing_errors

    with speaking(language), pytest.raises(gr.Error) as error, user_facing_errors():
        raise ValueError("`top_k` has to be an integer in [0, 200], but is -5")
    assert error.value.title == title and "-5" in error.value.message
    shown = []
    monkeypatch.setattr(gr, "Info", lambda message, title: shown.append(title))
    with speaking(language):
        page_info("A note.")
    assert shown == [{"en": "Info", "es": "Información", "fr": "Information"}[language]]


def test_a_text_the_browser_translates_cannot_hold_braces():
    """Gradio's marker is JSON inside a string, read up to the first closing brace."""
    assert "__i18n__" in str(T("Generate"))
    with pytest.raises(ValueError, match="braces"):
        T("{n} tokens")


# ---- the guard: no user-facing English outside the tables ---------------------------------------------------------


def literal_texts(module: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(the texts given to T/tr or marked `# i18n: key`, the texts that look shown but are not translated)."""
    source = (DEMO / module).read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    keys, untranslated = [], []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        comments = " ".join(lines[node.lineno - 1:node.end_lineno])
        around = comments + enclosing_def_line(node, parents, lines)
        if "# i18n: not shown" in around or "# i18n: model text" in around:
            continue
        context = why_never_shown_or_translated(node, parents)
        if context in ("never shown", "docstring"):
            continue
        if context == "translated" or "# i18n: key" in comments:
            keys.append((node.lineno, node.value))
        elif WORDS.search(node.value):
            untranslated.append((node.lineno, node.value))
    return keys, untranslated


def enclosing_def_line(node: ast.AST, parents: dict, lines: list[str]) -> str:
    """The `def` lines around `node`: a function for the host's console says so once, on its def line."""
    found = []
    while (node := parents.get(node)) is not None:
        if isinstance(node, ast.FunctionDef):
            found.append(lines[node.lineno - 1])
    return " ".join(found)


def why_never_shown_or_translated(node: ast.Constant, parents: dict) -> str | None:
    if isinstance(parents.get(node), ast.Expr):
        return "docstring"
    if isinstance(parents.get(node), ast.Dict) and node in parents[node].keys:
        return "never shown"  # a key of a table in the code
    if re.match(r"\s*(async )?(\(\w*(, \w+)*\)|\w+) =>|\s*function\b", node.value):
        return "never shown"  # JavaScript for the page
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.keyword) and parent.arg in NEVER_SHOWN_KEYWORDS:
            return "never shown"
        if isinstance(parent, ast.Call):
            func = parent.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            if name in ("T", "tr") and parent.args and child is parent.args[0]:
                if child is node or (isinstance(child, ast.IfExp) and node in (child.body, child.orelse)):
                    return "translated"
                if name == "T" and isinstance(child, ast.JoinedStr):
                    return "never shown"  # T(f"...") is a key fixed at start-up: the built page's test checks it
                return None  # any other text built inside T()/tr() is no key of the tables: use tr()'s fields
            if owner in LOGGING or name in ("getLogger", "compile", "match", "search", "sub", "fullmatch"):
                return "never shown"
        if isinstance(parent, ast.Assign | ast.AnnAssign):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            if any(isinstance(t, ast.Name) and NEVER_SHOWN_NAMES.search(t.id) for t in targets):
                return "never shown"
        child, parent = parent, parents.get(parent)
    return None


@pytest.mark.parametrize("module", MODULES)
def test_every_shown_string_in_the_module_is_translated(module):
    keys, untranslated = literal_texts(module)
    assert not untranslated, (f"{module}: wrap these in T() (layout) or tr() (a request), or mark the line "
                              f"'# i18n: not shown': " + "; ".join(f"line {n}: {text[:60]!r}" for n, text in untranslated))
    for language, table in tables().items():
        missing = [(n, text) for n, text in keys if text not in table]
        assert not missing, f"{module}: no {language} for " + "; ".join(f"line {n}: {t[:60]!r}" for n, t in missing)


def test_the_guard_finds_an_untranslated_label(tmp_path, monkeypatch):
    """The check above can fail: a new English label, an English error, and a T() text the tables lack."""
    module = tmp_path / "new_tab.py"
    module.write_text('import gradio as gr\nfrom demo.i18n import T, tr\n\n'
                      'def new_tab():\n    gr.Button("Do the thing", elem_id="do-it")\n'
                      '    gr.Markdown(T("A text no table has"))\n\n'
                      'def handler():\n    raise gr.Error(f"That went wrong: {3}")\n', encoding="utf-8")
    monkeypatch.setattr(__import__(__name__), "DEMO", tmp_path)
    keys, untranslated = literal_texts("new_tab.py")
    assert [text for _, text in untranslated] == ["Do the thing", "That went wrong: "]
    assert keys == [(6, "A text no table has")] and "A text no table has" not in tables()["es"]


# ---- the built page ------------------------------------------------------------------------------------------------

SHOWN_PROPS = ("label", "info", "placeholder", "value", "choices", "description", "title", "show_label_text")
MARKER = re.compile(r'__i18n__(\{"__type__": "translation_metadata", "key": "(?:[^"\\]|\\.)*"\})')


def shown_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and value.get("__type__") == "translation_metadata":
        return ["__i18n__" + json.dumps(value)]
    if isinstance(value, list | tuple):  # choices are [label, value] pairs: the label is shown
        return [s for item in value for s in shown_strings(item[0] if isinstance(item, list | tuple) else item)]
    return []


def untranslated_words(text: str) -> list[str]:
    keys = [json.loads(m.group(1))["key"] for m in MARKER.finditer(text)]
    missing = [key for key in keys if any(key not in table for table in tables().values())]
    if len(keys) > 1:  # Gradio's page translates the first marker of a text only (6.31)
        missing.append(f"{len(keys)} markers in one text")
    rest = MARKER.sub(" ", text)
    rest = re.sub(r"<[^>]+>|&\w+;|https?://\S+|`[^`]*`|\S*/\S*", " ", rest)  # markup, addresses, code, paths
    words = [w for w in re.findall(r"[^\W\d_][\w'’-]+", rest) if w not in NAMES and not re.search(r"\d", w)]
    return missing + words


def test_every_label_and_text_of_the_built_page_is_in_the_tables(tiny_checkpoint, tiny_bert):
    from demo import AppConfig, build_demo, start_models

    config = AppConfig(model=str(tiny_checkpoint), bert_model=str(tiny_bert), device="cpu")
    models = start_models(config)
    try:
        demo = build_demo(config, models=models)
        found = []
        for component in demo.get_config_file()["components"]:
            props = component.get("props", {})
            if component.get("type") in ("api", "state"):
                continue  # not on the page: an API endpoint's parameters, a session's value
            for prop in SHOWN_PROPS:
                if component.get("type") in ("textbox", "number", "slider", "dropdown", "radio", "checkbox",
                                             "state", "json", "file", "highlightedtext", "image", "plot",
                                             "barplot", "lineplot", "dataframe", "label") and prop == "value":
                    continue  # a value typed or computed, not a text of the page
                for text in shown_strings(props.get(prop)):
                    if words := untranslated_words(text):
                        found.append(f"{component.get('type')}#{props.get('elem_id')}.{prop}: {words[:4]}")
            # a coloured text's legend shows its colour map's names: the page names them in its language (a
            # request's update gives the translated map), so each must be a key of every table
            for name in props.get("color_map") or {}:
                if lacking := [lang for lang, table in tables().items() if name not in table]:
                    found.append(f"{component.get('type')}#{props.get('elem_id')}.color_map: {name!r} ({lacking})")
        assert not found, "untranslated texts on the page:\n" + "\n".join(found)
    finally:
        demo.close()
        models.close()


def test_a_links_lang_reaches_the_page_before_gradio_starts_and_nothing_else_is_touched():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    page = "<html><head><title>t</title></head><body></body></html>"
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(page)),
                            Route("/config", lambda request: JSONResponse({"head": "<head>"}))],
                    middleware=[Middleware(i18n.LinkLanguage)])
    with TestClient(app) as client:
        french = client.get("/?lang=fr&lesson=3")
        assert french.text.startswith("<html><head><script>") and "'fr'" in french.text
        assert french.text.endswith(page[len("<html><head>"):])
        assert int(french.headers["content-length"]) == len(french.content)
        assert client.get("/?lang=ES").text.count("'es'") == 2
        for unchanged in ("/", "/?lang=de", "/?lang=%27%3Balert(1)%3B%27"):
            assert client.get(unchanged).text == page, unchanged
        assert client.get("/config?lang=fr").json() == {"head": "<head>"}
