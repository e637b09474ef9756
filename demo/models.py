"""The app's models: the one GPT-2 every visitor shares (switchable), and BERT, loaded on first use.

`AppModels` is the app's only mutable state. Switching GPT-2 never breaks a request in flight: each request holds the
model it started on (`use()`), new requests get the new model, and the old one is closed when its last request ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from demo.config import AppConfig
from gpt2_core import PRESETS, LanguageModel, ModelUnavailableError, UnsafeCheckpointError, load_model
from gpt2_core.bert.fill_mask import FillMask, load_fill_mask
from gpt2_core.checkpoint import BUNDLED

log = logging.getLogger(__name__)

BUNDLED_PRESENT = all((path / "model.safetensors").is_file() for path in BUNDLED.values())
LOAD_ERRORS = (ModelUnavailableError, UnsafeCheckpointError, ValueError)  # what a load reports to the page as text


class ModelBusyError(RuntimeError):
    """Another model is being loaded right now."""


class ModelHolder:
    """The current GPT-2, with a count of the requests using each loaded model."""

    def __init__(self, load: Callable[[str], LanguageModel], source: str, *, fallback: str | None = None):
        self._load = load
        self._lock = threading.Lock()  # guards the fields below; held only for bookkeeping, never while loading
        self._loading = threading.Lock()  # one switch at a time
        self._current: LanguageModel | None = None
        self._users: dict[LanguageModel, int] = {}  # loaded model -> requests using it
        self._retired: set[LanguageModel] = set()  # replaced models still finishing requests
        self.source = source  # what the current model (or the failed attempt) was loaded from
        self.error: str | None = None  # why there is no model, with the fix; None when one is loaded
        self.notice: str | None = None  # why a fallback serves instead of the model asked for
        try:
            self.switch(source)
        except LOAD_ERRORS as e:  # the app still starts and its page says why (self.error, or self.notice)
            if fallback is not None and fallback != source:
                try:
                    self.switch(fallback)
                    self.notice = (f"`{source}` could not be loaded, so the bundled `{fallback}` serves instead. "
                                   f"Why: {e}")
                except LOAD_ERRORS:
                    self.source, self.error = source, str(e)

    @property
    def current(self) -> LanguageModel | None:
        return self._current

    @contextmanager
    def use(self) -> Iterator[LanguageModel]:
        """The current model, kept open until the `with` block ends (a model switch waits for it)."""
        with self._lock:
            lm = self._current
            if lm is None:
                raise ModelUnavailableError(self.error or "no model is loaded")
            self._users[lm] += 1
        try:
            yield lm
        finally:
            with self._lock:
                self._users[lm] -= 1
                close = lm in self._retired and self._users[lm] == 0
                if close:
                    self._retired.discard(lm)
                    del self._users[lm]
            if close:
                log.info("closing %s: its last request ended", lm.name)
                lm.close()

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._users.values())

    def switch(self, source: str) -> LanguageModel:
        """Load `source` and make it current; on failure keep the old model and re-raise (see `error`)."""
        if not self._loading.acquire(blocking=False):
            raise ModelBusyError("another model is loading right now; try again when it is ready")
        try:
            log.info("loading %s", source)
            try:
                new = self._load(source)
            except LOAD_ERRORS as e:
                log.error("cannot load %s: %s", source, e)
                with self._lock:
                    if self._current is None:
                        self.source, self.error = source, str(e)
                raise
            with self._lock:
                old, self._current = self._current, new
                self._users[new] = 0
                self.source, self.error, self.notice = source, None, None
                close_old = old is not None and self._users[old] == 0
                if close_old:
                    del self._users[old]
                elif old is not None:
                    self._retired.add(old)
            if close_old:
                old.close()
            return new
        finally:
            self._loading.release()

    def close(self) -> None:
        with self._lock:
            models = set(self._users)
            self._current = None
        for lm in models:
            lm.close()


class LazyFillMask:
    """BERT, loaded on the first call of `get()` (a failed load is tried again on the next call)."""

    def __init__(self, load: Callable[[str], FillMask], source: str):
        self._load = load
        self._lock = threading.Lock()
        self._model: FillMask | None = None
        self.source = source

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> FillMask:
        with self._lock:
            if self._model is None:
                log.info("loading %s for the BERT vs GPT-2 tab", self.source)
                self._model = self._load(self.source)
            return self._model


@dataclass
class AppModels:
    gpt2: ModelHolder
    bert: LazyFillMask
    choices: list[str]  # what the page may switch GPT-2 to: the family and the start-up model, never other repos

    def close(self) -> None:
        self.gpt2.close()


def start_models(config: AppConfig, *, load_gpt2: Callable[..., LanguageModel] = load_model,
                 load_bert: Callable[..., FillMask] = load_fill_mask) -> AppModels:
    """Load GPT-2 now (or record why it cannot be had); BERT waits for its tab. Loaders are injectable for tests."""
    def load_for_app(source: str) -> LanguageModel:
        lm = load_gpt2(source, device=config.device, quantize=config.quantize)
        if config.compile and lm.device.type == "cpu" and not config.quantize:
            lm.compile(background=True)  # the page is served meanwhile; decoding speeds up once it is ready
        return lm

    fallback = next(iter(BUNDLED)) if BUNDLED_PRESENT else None  # real words offline, from a model this project trained
    gpt2 = ModelHolder(load_for_app, config.model, fallback=fallback)
    bert = LazyFillMask(partial(load_bert, device=config.device), config.bert_model)
    choices = list(PRESETS) + [name for name in BUNDLED if BUNDLED_PRESENT] + (
        [config.model] if config.model not in PRESETS and config.model not in BUNDLED else [])
    return AppModels(gpt2, bert, choices)
