"""The app's models: the one GPT-2 every visitor shares (switchable), the models visitors trained for themselves, and
BERT, loaded on first use.

`AppModels` is the app's only mutable state. Switching GPT-2 never breaks a request in flight: each request holds the
model it started on (`use()`), new requests get the new model, and the old one is closed when its last request ends.
A model a visitor trained in the Build your own tab serves that visitor's page only (`AppModels.use(session)`), until the
page closes or newer ones push it out (`OwnModels`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial

from demo.config import AppConfig
from demo.i18n import tr
from demo.zerogpu import spaces_lend
from gpt2_core import PRESETS, LanguageModel, ModelUnavailableError, TextModel, UnsafeCheckpointError, load_model
from gpt2_core.bert.fill_mask import FillMask, load_fill_mask
from gpt2_core.checkpoint import BUNDLED
from gpt2_core.remote import RemoteModel
from gpt2_core.zerogpu import GpuTime, Lend, ZeroGpuBackend

log = logging.getLogger(__name__)

BUNDLED_PRESENT = all((path / "model.safetensors").is_file() for path in BUNDLED.values())
LOAD_ERRORS = (ModelUnavailableError, UnsafeCheckpointError, ValueError)  # what a load reports to the page as text
OWN_MODELS_LIMIT = 2  # visitors' own models kept in memory at once (a fine-tuned gpt2 is 0.5 GB); the oldest goes first


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
        self._fell_back: tuple[str, str, str] | None = None  # (asked for, serving instead, why) for `notice`
        try:
            self.switch(source)
        except LOAD_ERRORS as e:  # the app still starts and its page says why (self.error, or self.notice)
            if fallback is not None and fallback != source:
                try:
                    self.switch(fallback)
                    self._fell_back = (source, fallback, str(e))
                    log.warning("serving the bundled %s: %s could not be loaded (the page says why)", fallback, source)
                    return
                except LOAD_ERRORS:
                    self.source, self.error = source, str(e)
            log.error("no GPT-2 serves: the page says why and how to fix it")

    @property
    def current(self) -> LanguageModel | None:
        return self._current

    @property
    def notice(self) -> str | None:
        """Why a fallback serves instead of the model asked for (None when it does not), in the language of the
        request that reads it: it is known at start-up, and read by every page."""
        if self._fell_back is None:
            return None
        source, fallback, why = self._fell_back
        return tr("`{source}` could not be loaded, so the bundled `{fallback}` serves instead. Why: {why}",
                  source=source, fallback=fallback, why=why)

    @contextmanager
    def use(self) -> Iterator[LanguageModel]:
        """The current model, kept open until the `with` block ends (a model switch waits for it)."""
        with self._lock:
            lm = self._current
            if lm is None:
                raise ModelUnavailableError(self.error or tr("no model is loaded"))
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
            raise ModelBusyError(tr("another model is loading right now; try again when it is ready"))
        try:
            log.info("loading %s", source)
            try:
                new = self._load(source)
            except LOAD_ERRORS as e:  # a warning: the server goes on, and the page says why (a fallback may serve)
                log.warning("cannot load %s: %s", source, e)
                with self._lock:
                    if self._current is None:
                        self.source, self.error = source, str(e)
                raise
            with self._lock:
                old, self._current = self._current, new
                self._users[new] = 0
                self.source, self.error, self._fell_back = source, None, None
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

    def retire(self) -> None:
        """Let the current model go: new requests get none, and it closes when its last request ends."""
        with self._lock:
            lm, self._current = self._current, None
            if lm is None:
                return
            close = self._users[lm] == 0
            if close:
                del self._users[lm]
            else:
                self._retired.add(lm)
        if close:
            lm.close()

    def close(self) -> None:
        with self._lock:
            models = set(self._users)
            self._current = None
        for lm in models:
            lm.close()


class OwnModels:
    """Models that visitors trained here, each serving its own visitor's page (a Gradio session) and nobody else's.

    At most `limit` stay in memory: adopting one more retires the longest-held. A page that closes lets its model go.
    """

    def __init__(self, load: Callable[[str], LanguageModel], limit: int = OWN_MODELS_LIMIT):
        self._load = load
        self._limit = limit
        self._lock = threading.Lock()
        self._holders: OrderedDict[str, ModelHolder] = OrderedDict()  # session -> its model, oldest first

    def adopt(self, session: str, directory: str, name: str) -> LanguageModel:
        """Load the model in `directory` for `session`'s requests, named `name` on the page."""
        def load(source: str) -> LanguageModel:
            lm = self._load(source)
            lm.name = name
            return lm

        holder = ModelHolder(load, directory)
        if holder.current is None:
            raise ModelUnavailableError(holder.error or tr("{directory} could not be loaded", directory=directory))
        with self._lock:
            retired = [h for h in (self._holders.pop(session, None),) if h is not None]
            self._holders[session] = holder
            while len(self._holders) > self._limit:
                retired.append(self._holders.popitem(last=False)[1])
        for old in retired:
            old.retire()
        return holder.current

    def holder(self, session: str | None) -> ModelHolder | None:
        with self._lock:
            return self._holders.get(session) if session else None

    def drop(self, session: str | None) -> None:
        """`session` goes back to the shared model; its own closes when its last request ends."""
        with self._lock:
            holder = self._holders.pop(session, None) if session else None
        if holder is not None:
            holder.retire()

    def close(self) -> None:
        with self._lock:
            holders, self._holders = list(self._holders.values()), OrderedDict()
        for holder in holders:
            holder.close()


class LazyFillMask:
    """BERT, loaded on the first call of `get()` (a failed load is tried again on the next call, and `error` keeps
    why the last one failed, so that pages can say so without loading anything)."""

    def __init__(self, load: Callable[[str], FillMask], source: str):
        self._load = load
        self._lock = threading.Lock()
        self._model: FillMask | None = None
        self.source = source
        self.error: str | None = None  # why the last load failed; None before the first and after a success

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> FillMask:
        with self._lock:
            if self._model is None:
                if self.error is None:  # (a load that failed is tried again by each request, logged when it changes)
                    log.info("loading %s for the BERT vs GPT-2 tab", self.source)
                try:
                    self._model = self._load(self.source)
                except (*LOAD_ERRORS, OSError) as e:
                    if str(e) != self.error:
                        log.warning("cannot load %s, its tabs show GPT-2 only: %s", self.source, e)
                    self.error = str(e)
                    raise
                self.error = None
            return self._model


@dataclass
class AppModels:
    gpt2: ModelHolder
    bert: LazyFillMask
    choices: list[str]  # what the page may switch GPT-2 to: the family and the start-up model, never other repos
    own: OwnModels = field(default_factory=lambda: OwnModels(partial(load_model, device="cpu", dtype="fp32")))
    load_gpt2: Callable[..., LanguageModel] = load_model  # how other models load (the Scale tab's sizes)
    public: bool = False  # the page is served to other machines: messages keep this host's details to itself

    @contextmanager
    def use(self, session: str | None) -> Iterator[TextModel]:
        """The model serving `session`: the one its visitor trained, if they chose to use it, else the shared GPT-2."""
        own = self.own.holder(session)
        with ExitStack() as stack:
            lm = None
            if own is not None:
                try:
                    lm = stack.enter_context(own.use())
                except ModelUnavailableError:  # retired between the lookup and now (pushed out, or Back)
                    lm = None
            if lm is None:
                lm = stack.enter_context(self.gpt2.use())
            yield lm

    def serving(self, session: str | None) -> TextModel | None:
        """The model `session`'s next request would get (None: no model)."""
        return (self.own.holder(session) or self.gpt2).current

    def unavailable(self, feature: str) -> str | None:
        """Why the shared GPT-2's backend cannot do `feature` (backend.ATTENTION, ...); None when it can."""
        lm = self.gpt2.current
        return None if lm is None else lm.describe().unavailable.get(feature)

    def close(self) -> None:
        self.own.close()
        self.gpt2.close()


def start_models(config: AppConfig, *, load_gpt2: Callable[..., LanguageModel] = load_model,
                 load_bert: Callable[..., FillMask] = load_fill_mask,
                 remote: Callable[..., RemoteModel] = RemoteModel, lend: Lend = spaces_lend) -> AppModels:
    """Load GPT-2 now (or record why it cannot be had); BERT waits for its tab. Loaders are injectable for tests.

    With `config.backend` (remote mode) GPT-2 runs on that server: nothing is loaded here but its tokenizer, asked
    for in the background so that the page is served at once, even while the server is still starting. On ZeroGPU
    (`config.zero_gpu`) every GPT-2 call runs inside `lend` (see start_zero_gpu).
    """
    if config.backend:
        return start_remote(config, load_bert=load_bert, remote=remote)
    if config.zero_gpu:
        return start_zero_gpu(config, load_gpt2=load_gpt2, load_bert=load_bert, lend=lend)
    compile = {None: "auto", True: "background", False: False}[config.compile]  # the page is served meanwhile

    def load_for_app(source: str) -> LanguageModel:
        if config.exact:
            return load_gpt2(source, device=config.device, dtype="fp32", quantize=None, compile=compile)
        return load_gpt2(source, device=config.device, quantize=config.quantize or "auto", compile=compile)

    fallback = next(iter(BUNDLED)) if BUNDLED_PRESENT else None  # real words offline, from a model this project trained
    gpt2 = ModelHolder(load_for_app, config.source, fallback=fallback)
    bert = LazyFillMask(partial(load_bert, device=config.device), config.bert_model)
    choices = list(PRESETS) + [name for name in BUNDLED if BUNDLED_PRESENT] + (
        [config.source] if config.source not in PRESETS and config.source not in BUNDLED else [])
    own = OwnModels(partial(load_gpt2, device="cpu", dtype="fp32"))  # trained on this CPU, and served there
    return AppModels(gpt2, bert, choices, own, load_gpt2, public=config.public)


def start_zero_gpu(config: AppConfig, *, load_gpt2: Callable[..., LanguageModel], load_bert: Callable[..., FillMask],
                   lend: Lend) -> AppModels:
    """ZeroGPU (demo/zerogpu.py): GPT-2 loaded now, at start-up, on `cuda` (the `spaces` package keeps it aside until a
    call is lent the GPU), never compiled, and served by ZeroGpuBackend: every model call inside `lend`
    (spaces.GPU), in that call's thread. BERT runs on the CPU, since a model loaded after start-up cannot go to the
    GPU there; for the same reason the model cannot be switched."""
    if config.compile:
        log.info("--compile is ignored on ZeroGPU, which does not support torch.compile")
    device = "cuda" if config.device == "auto" else config.device
    gpu_time = GpuTime()  # the decode and forward rates measured on one model's calls

    def load_for_zero_gpu(source: str) -> TextModel:
        lm = load_gpt2(source, device=device, quantize=config.quantize, compile=False)
        return TextModel(ZeroGpuBackend(lm.backend, lend, gpu_time=gpu_time))

    fallback = next(iter(BUNDLED)) if BUNDLED_PRESENT else None
    gpt2 = ModelHolder(load_for_zero_gpu, config.source, fallback=fallback)
    bert = LazyFillMask(partial(load_bert, device="cpu"), config.bert_model)
    return AppModels(gpt2, bert, [config.source], OwnModels(partial(load_gpt2, device="cpu", dtype="fp32")), load_gpt2,
                     public=config.public)


def start_remote(config: AppConfig, *, load_bert: Callable[..., FillMask],
                 remote: Callable[..., RemoteModel]) -> AppModels:
    def connect(url: str) -> RemoteModel:
        options = {"api_key": config.backend_api_key} if config.backend_api_key else {}
        if config.public:
            options["show_address"] = False  # visitors of a public page are not told where the server is
        lm = remote(url, config.model, **options)
        threading.Thread(target=_first_contact, args=(lm,), name="gpt2-backend", daemon=True).start()
        return lm

    gpt2 = ModelHolder(connect, config.backend)
    bert = LazyFillMask(partial(load_bert, device=config.device), config.bert_model)
    return AppModels(gpt2, bert, [], OwnModels(partial(load_model, device="cpu", dtype="fp32")), load_model,
                     public=config.public)


def _first_contact(lm: RemoteModel) -> None:
    try:
        lm.connect()
    except (ModelUnavailableError, ValueError) as e:  # the page says so; requests try again
        log.warning("GPT-2 server not ready: %s", e)
