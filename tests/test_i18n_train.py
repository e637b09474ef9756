"""Build your own in Spanish and French, and gpt2_core's messages to page users in the page's language (demo/errors.py)."""

from __future__ import annotations

import ast
import itertools
import json
from pathlib import Path

import pytest

from demo.errors import ENGINE_MESSAGES, in_page_language, template_patterns, user_facing_errors
from demo.i18n import speaking, tables
from gpt2_core.generate.settings import SamplingParams

ENGINE_CASES = [  # a setting out of range, and the words its message has in each language
    ({"temperature": 2.5}, "`temperature`", "2.5", "un número finito en [0, 2]", "un nombre fini dans [0, 2]"),
    ({"top_k": -5}, "`top_k`", "-5", "un número entero en [0, 50257]", "un nombre entier dans [0, 50257]"),
    ({"top_p": 0}, "`top_p`", "0", "un número finito en (0, 1]", "un nombre fini dans (0, 1]"),
    ({"max_new_tokens": 5000}, "`max_new_tokens`", "5000", "un número entero en [1, ", "un nombre entier dans [1, "),
    ({"seed": -7}, "`seed`", "-7", "-1 (aleatoria) o un número entero", "-1 (aléatoire) ou être un nombre entier"),
]


def engine_message(settings: dict) -> str:
    with pytest.raises(ValueError) as error:
        SamplingParams(**settings)
    return str(error.value)


@pytest.mark.parametrize(("settings", "name", "value", "es", "fr"), ENGINE_CASES)
def test_gpt2_cores_messages_come_out_in_the_pages_language_with_their_names_and_numbers(settings, name, value, es, fr):
    english = engine_message(settings)
    assert in_page_language(english) == english  # English, outside a request and for API clients
    with speaking("en"):
        assert in_page_language(english) == english
    for language, words, but in (("es", es, ", pero es "), ("fr", fr, ", mais vaut ")):
        with speaking(language):
            translated = in_page_language(english)
        assert translated.startswith(name + " ") and words in translated, translated
        assert translated.endswith(but + value), translated
        assert "has to be" not in translated


def test_user_facing_errors_shows_a_bad_setting_in_the_pages_language_and_an_unknown_message_in_english():
    import gradio as gr

    english = engine_message({"top_k": -5})
    for language, expected in (("en", english), ("es", "`top_k` tiene que ser un número entero en [0, 50257], pero es -5"),
                               ("fr", "`top_k` doit être un nombre entier dans [0, 50257], mais vaut -5")):
        with speaking(language), pytest.raises(gr.Error) as error, user_facing_errors():
            SamplingParams(top_k=-5)
        assert error.value.message == expected
    with speaking("es"), pytest.raises(gr.Error) as error, user_facing_errors():
        raise ValueError("a message <b>no template</b> has")
    assert error.value.message == "a message &lt;b&gt;no template&lt;/b&gt; has"  # English, escaped as before


@pytest.mark.parametrize("message", [
    "`target` has to be exactly one token of the vocabulary, but ' Paris is' is 2 tokens (' Paris' + ' is'): "
    "try its first token, ' Paris'",
    "`text` has to be 1 to 64 tokens long to show its attention, but has 65",
    "`sentence` has to contain exactly one blank, written ___ or [MASK], but has 2: 'a ___ b ___'",
    "`text` is too short to train on: it has 900 tokens, and needs at least 5140 for a context of 256 (about 20560 "
    "characters)",
    "`num_samples` has to be at most 2 with this model here (the samples it decodes at once, as its memory allows), "
    "but is 3",
])
def test_each_family_reads_back_its_fields_unchanged(message):
    for language in ("es", "fr"):
        with speaking(language):
            translated = in_page_language(message)
        assert translated != message
        for quoted in ("' Paris is'", "' Paris' + ' is'", "64", "65", "'a ___ b ___'", "5140", "20560", "`num_samples`"):
            assert (quoted in message) == (quoted in translated), (quoted, translated)


def test_every_engine_template_is_in_both_tables():
    for template in ENGINE_MESSAGES:
        assert template in tables()["es"] and template in tables()["fr"], template


# Where gpt2_core's ValueErrors cannot reach a page's user: the host's command lines and start-up settings, and checks
# behind the ones a page meets first (the text's length is checked by lm.py before the lens or attention sees it)
HOST_ONLY_MODULES = {"cli.py", "config.py", "devices.py", "precision.py", "quantize.py", "memory.py", "model.py",
                     "train/loop.py", "train/resume.py", "remote/logprobs.py"}
HOST_ONLY_MESSAGES = ("attention needs ", "the logit lens needs ", "top has to be in ", "this tokenizer does not split",
                      "`params` has to be a SamplingParams", "`k` has to be a positive integer",
                      "`source` has to be a Hub id", "`sources` has to be a list of models",  # (the host's, and the
                      "`token_id` has to be a token id", "`micro_batch` has to be")  # engine's ids; no page flag)
FILLS = ("x1", "[", "(", "")  # what a {value} of a message may write, tried in every combination


def engine_value_errors() -> list[tuple[str, int, list[str | None]]]:
    """gpt2_core's `raise ValueError(message)` sites outside HOST_ONLY_MODULES: (file, line, the message's pieces:
    text, or None where a value goes)."""
    root = Path(__file__).resolve().parent.parent / "gpt2_core"
    found = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name in HOST_ONLY_MODULES or name.startswith("testing/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and getattr(node.exc.func, "id", "") == "ValueError" and node.exc.args):
                found.append((name, node.lineno, pieces_of(node.exc.args[0])))
    return found


def pieces_of(node: ast.expr) -> list[str | None]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    return [None]  # a message built elsewhere: only a template of one {field} could match it


def reads_as_a_template(pieces: list[str | None]) -> bool:
    holes = [i for i, piece in enumerate(pieces) if piece is None]
    patterns = [pattern for _, pattern in template_patterns(ENGINE_MESSAGES)]
    for fills in itertools.product(FILLS, repeat=len(holes)):
        shown = list(pieces)
        for i, fill in zip(holes, fills, strict=True):
            shown[i] = fill
        if any(pattern.fullmatch("".join(shown)) for pattern in patterns):  # type: ignore[arg-type]
            return True
    return False


def test_every_message_gpt2_core_gives_a_page_is_one_the_tables_translate():
    """A new ValueError in gpt2_core that a page's user can cause has to be one of ENGINE_MESSAGES (translated), or
    the page shows it in English."""
    untranslated = [f"gpt2_core/{name}:{line}: {''.join(p if p is not None else '{...}' for p in pieces)[:80]!r}"
                    for name, line, pieces in engine_value_errors()
                    if not (pieces[0] or "").startswith(HOST_ONLY_MESSAGES) and not reads_as_a_template(pieces)]
    assert not untranslated, "add these to demo/errors.py's ENGINE_MESSAGES and its tables:\n" + "\n".join(untranslated)
    assert len(engine_value_errors()) > 20  # the walk found gpt2_core's checks


def test_the_engine_message_guard_finds_a_new_message():
    assert reads_as_a_template(["`", None, "` has to be an integer in [", None, ", ", None, "], but is ", None])
    assert reads_as_a_template(["`x` has to be a finite number in ", None, "0, 2], but is ", None])  # a bracket
    assert not reads_as_a_template(["`", None, "` has to be a colour, but is ", None])


# ---- Build your own ------------------------------------------------------------------------------------------------


class FakeRun:
    def __init__(self, init: str = "tiny", errors: list[str] | None = None, stop_asked: bool = False):
        self.init, self.minutes, self.errors, self.stop_asked = init, 2.0, errors or [], stop_asked


EVALUATIONS = [{"step": 25 * i, "train_loss": 5.0 - i, "val_loss": 5.5 - i, "elapsed_s": 10.0 * i,
                "tokens_per_s": 3000, "total_steps": 100, "sample": "The king"} for i in range(3)]


def test_build_your_owns_labels_are_keys_of_both_tables():
    from demo import train_tab

    for text in (train_tab.SCRATCH, train_tab.FINE_TUNE, train_tab.INTRO, train_tab.TRAINING_OFF, "Start training",
                 "Loss (lower is better)", f"At least {train_tab.MIN_TEXT_CHARS:,} characters; a .txt file can be uploaded."):
        assert text in tables()["es"] and text in tables()["fr"], text
    assert tables()["es"]["Start training"] == "Empezar a entrenar"


def test_build_your_owns_status_comes_out_in_spanish_and_french_with_its_numbers():
    from demo.train_tab import progress, samples_of

    english = progress(FakeRun(), EVALUATIONS, False, elapsed_s=31, since_eval_s=1)
    assert english.startswith("**Training\u2026** step 50 of 100, validation loss 3.50, 3,000 tokens/s; 31 s so far")
    with speaking("es"):
        spanish = progress(FakeRun(), EVALUATIONS, False, elapsed_s=31, since_eval_s=1)
        done = progress(FakeRun(), EVALUATIONS, True, elapsed_s=40, since_eval_s=1)
        preparing = progress(FakeRun("gpt2"), [], False, elapsed_s=3, since_eval_s=3)
        samples = samples_of(EVALUATIONS)
    assert spanish.startswith("**Entrenando\u2026** paso 50 de 100, pérdida de validación 3,50, 3000 tokens/s; 31 s")
    assert done.startswith("**Listo** tras 50 pasos y 40 s") and "pérdida de validación 3,50" in done
    assert preparing == "**Preparando:** leyendo el texto y cargando los pesos de GPT-2\u2026 3 s hasta ahora."
    assert samples.startswith("<h4>Muestras del mismo texto inicial") and "<strong>Paso 50</strong>" in samples
    with speaking("fr"):
        french = progress(FakeRun(), EVALUATIONS, False, elapsed_s=31, since_eval_s=1)
    assert french.startswith("**Entraînement\u2026** étape 50 sur 100, perte de validation 3,50, 3\u202f000 tokens/s")


def test_a_from_scratch_run_that_ends_in_noise_is_told_how_far_words_are():
    """A 1-minute run from scratch on a busy machine ended at a validation loss of 7.12, its samples line breaks and
    pieces of words: the status says where words begin, from the bundled model's own run, in the page's language."""
    from demo.train_tab import WORDS_LOSS, progress, shown_sample, steps_to_words
    from gpt2_core.checkpoint import BUNDLED

    record = json.loads((BUNDLED["mini-gpt2"] / "training.json").read_text(encoding="utf-8"))["curve"]
    first = next(e for e in record if e["val_loss"] <= WORDS_LOSS)
    assert steps_to_words() == first["step"] > 0 and all(e["val_loss"] > WORDS_LOSS for e in record[:record.index(first)])
    noisy = [dict(EVALUATIONS[0], step=16, val_loss=7.12)]
    said = {}
    for language in ("en", "es", "fr"):
        with speaking(language):
            said[language] = progress(FakeRun(), noisy, True, elapsed_s=84, since_eval_s=1)
    assert said["en"].endswith(f"Download the model below. Its samples are still mostly noise: from scratch they turn "
                               f"into words below a validation loss of about 5.5 (the bundled model's run was there by "
                               f"step {first['step']}), so more minutes show more.")
    assert f"unos 5,5 (el entrenamiento del modelo incluido había llegado ahí en el paso {first['step']})" in said["es"]
    assert f"d'environ 5,5 (l'entraînement du modèle fourni y était à l'étape {first['step']})" in said["fr"]
    for run, evaluations in ((FakeRun("gpt2"), noisy), (FakeRun(), [dict(noisy[0], val_loss=5.2)])):
        assert "noise" not in progress(run, evaluations, True, elapsed_s=84, since_eval_s=1), "fine-tuned, or words"
    assert shown_sample("s\n\n\n\n\n this\n\nl\n \n\n\n.ance") == "s\n\u23ce\u00d75\n this\n\nl\n\u23ce\u00d74\n.ance", \
        "runs of line breaks on one line each, with their count; one blank line stays"


def test_a_stopped_runs_status_comes_out_in_spanish_and_french_with_its_numbers():
    from demo.train_tab import progress

    stopped = FakeRun(stop_asked=True)
    said = {}
    for language in ("en", "es", "fr"):
        with speaking(language):
            said[language] = (progress(stopped, EVALUATIONS, False, elapsed_s=31, since_eval_s=1),
                              progress(stopped, EVALUATIONS, True, elapsed_s=40, since_eval_s=1),
                              progress(stopped, [], True, elapsed_s=2, since_eval_s=2))
    assert said["en"] == (
        "**Stopping:** measuring the loss one last time and saving the model as it is\u2026 31 s so far.",
        "**Stopped** after 50 steps and 40 s, preparation included: validation loss 3.50. The model is saved as it "
        "was: download it below.",
        "**Stopped** before its first step: there is no model to save.")
    assert said["es"] == (
        "**Deteniendo:** midiendo la pérdida una última vez y guardando el modelo tal como está\u2026 31 s hasta ahora.",
        "**Detenido** tras 50 pasos y 40 s, preparación incluida: pérdida de validación 3,50. El modelo se ha guardado "
        "tal como estaba: descárgalo abajo.",
        "**Detenido** antes de su primer paso: no hay ningún modelo que guardar.")
    assert said["fr"] == (
        "**Arrêt en cours :** dernière mesure de la perte et enregistrement du modèle tel qu'il est\u2026 31 s écoulées.",
        "**Arrêté** après 50 étapes et 40 s, préparation comprise : perte de validation 3,50. Le modèle est "
        "enregistré tel qu'il était : téléchargez-le ci-dessous.",
        "**Arrêté** avant sa première étape : il n'y a aucun modèle à enregistrer.")


def test_a_failed_runs_last_line_is_translated_where_it_is_gpt2_cores_message():
    from demo.train_tab import progress
    from demo.training import EXIT_CODE

    line = ("python -m gpt2_core train: error: `text` is too short to train on: it has 900 tokens, and needs at least "
            "5140 for a context of 256 (about 20560 characters)")
    assert progress(FakeRun(errors=[line]), [], True, elapsed_s=3, since_eval_s=3).startswith("**Training failed:** python")
    with speaking("es"):
        spanish = progress(FakeRun(errors=[line]), [], True, elapsed_s=3, since_eval_s=3)
        code = progress(FakeRun(errors=[EXIT_CODE.format(code=-9)]), [], True, elapsed_s=3, since_eval_s=3)
    assert spanish.startswith("**El entrenamiento ha fallado:** python \\-m gpt2\\_core train: error: \\`text\\` es "
                              "demasiado corto para entrenar: tiene 900 tokens"), spanish
    assert code == "**El entrenamiento ha fallado:** el proceso de entrenamiento terminó con el código de salida \\-9"


def test_the_loss_curves_titles_come_from_a_load_event_on_a_translated_page_only():
    import gradio as gr

    from demo.train_tab import curve_of, plot_titles

    assert isinstance(plot_titles(), type(gr.skip()))  # English: the titles built with the plot
    with speaking("fr"):
        update = plot_titles()
        curve = curve_of(EVALUATIONS)
    assert (update.x_title, update.y_title) == ("étape d'entraînement", "entropie croisée (nats par token)")
    assert set(curve["split"]) == {"entraînement", "validation (mise de côté)"}


def test_a_busy_machine_is_told_in_the_pages_language(tmp_path):
    from demo.training import BUSY, TrainingBusyError

    error = TrainingBusyError(42.4)
    assert str(error) == "another visitor is training a model right now; it ends in about 42 s. Please try again then."
    with speaking("es"):
        from demo.i18n import tr

        assert tr(BUSY, seconds=error.seconds) == ("otra persona está entrenando un modelo ahora mismo; termina en unos "
                                                   "42 s. Vuelve a intentarlo entonces.")


def test_a_model_that_cannot_be_had_offline_is_explained_in_the_pages_language(monkeypatch, tmp_path):
    """gpt2_core's message for a model neither cached nor downloadable (BERT on an offline classroom's comparison),
    in Spanish and French, its command and names as gpt2_core wrote them."""
    from huggingface_hub import constants

    from gpt2_core import ModelUnavailableError
    from gpt2_core.checkpoint import download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelUnavailableError) as error:
        download("google-bert/bert-base-uncased")
    english = str(error.value)
    command = "`python -m gpt2_core download google-bert/bert-base-uncased`"
    for language, words in (("es", "no está en la caché de Hugging Face"), ("fr", "n'est pas dans le cache Hugging Face")):
        with speaking(language):
            translated = in_page_language(english)
        assert words in translated and command in translated and "'google-bert/bert-base-uncased'" in translated
        assert "model.safetensors" in translated and "is not in" not in translated
