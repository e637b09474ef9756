"""Finding and reading GPT-2 checkpoints: a Hugging Face Hub id or a local directory in Hugging Face format.

Reads `config.json` and safetensors weights in the three layouts real checkpoints use:
- the Hub's original upload (`wte.weight`, `h.0.attn.c_attn.weight`, plus `h.N.attn.bias` causal-mask buffers),
- `save_pretrained`'s (`transformer.` prefix, maybe `lm_head.weight`),
- sharded (`model.safetensors.index.json` naming several files).
GPT-2 was written with Conv1D layers whose weights are stored (in, out): they are transposed into nn.Linear's (out, in).
Safetensors only: pickle-based `pytorch_model.bin` can run arbitrary code when loaded, so it is refused.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open

from gpt2_core.config import GPTConfig

if TYPE_CHECKING:
    from gpt2_core.backend import Tokenizer
    from gpt2_core.model import GPT

log = logging.getLogger(__name__)

CONV1D_SUFFIXES = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
MASK_BUFFER = re.compile(r"h\.\d+\.attn\.(masked_)?bias")  # causal-mask buffers stored by old checkpoints
TOKENIZER_FILES = ["vocab.json", "merges.txt", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json"]  # GPT-2's BPE files, and BERT's WordPiece vocab.txt
LOCAL_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]  # what a local checkpoint needs
WEIGHT_PATTERNS = ["config.json", "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"]


class ModelUnavailableError(RuntimeError):
    """The model is neither a local directory nor reachable on (or cached from) the Hugging Face Hub."""


class UnsafeCheckpointError(RuntimeError):
    """The checkpoint has no safetensors weights (only pickle files, which this loader refuses)."""


# Models that ship with this project, by short name (trained by it: see assets/mini-gpt2/training.json).
BUNDLED = {"mini-gpt2": Path(__file__).resolve().parent.parent / "assets" / "mini-gpt2"}


def resolve_checkpoint_dir(source: str | os.PathLike[str], *, files: Sequence[str] = LOCAL_FILES,
                           kind: str = "GPT-2") -> Path:
    """A bundled model's folder by its short name; a local directory as it is; a Hub id downloaded (with progress
    bars) into the HF cache, or found there offline. `kind` and `files`: the model and what a local folder of it
    holds, as the fix names them when it cannot be had (GPT-2's by default; BERT's loader gives its own)."""
    if str(source) in BUNDLED:
        if not (BUNDLED[str(source)] / "config.json").is_file():  # (gpt2_core installed from a wheel has no assets/)
            raise ModelUnavailableError(
                f"{source} is bundled with the project's repository ({BUNDLED[str(source)]}), and this copy of "
                "gpt2_core has none. Fix: run from a clone of the repository, or give a Hub id such as gpt2.")
        return BUNDLED[str(source)]
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(source).startswith((".", "/", "~")):
        what = "is not a directory" if path.exists() else "does not exist"
        raise ModelUnavailableError(
            f"{str(source)!r} {what}. Fix: pass a directory holding a {kind} checkpoint ({', '.join(files)}), "
            "for example one written by transformers' save_pretrained or copied from a Hugging Face cache, or a Hub "
            "id such as gpt2 (fetched ahead with `python -m gpt2_core download gpt2`).")
    return download(str(source), files=files)


def resolve_tokenizer_dir(source: str | os.PathLike[str]) -> Path:
    """Like resolve_checkpoint_dir, but a Hub id fetches only its config and tokenizer files (no weights): what a
    client of a remote model server needs to count and show tokens."""
    if str(source) in BUNDLED or Path(source).expanduser().is_dir() or str(source).startswith((".", "/", "~")):
        return resolve_checkpoint_dir(source)
    return download(str(source), weights=False)


def download(repo_id: str, *, weights: bool = True, files: Sequence[str] = LOCAL_FILES) -> Path:
    """Fetch config, safetensors weights (unless weights=False) and tokenizer files of `repo_id` into the HF cache
    (honours HF_HUB_OFFLINE). `files`: what a local folder would hold instead, as the fix names it."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = (WEIGHT_PATTERNS if weights else ["config.json"]) + TOKENIZER_FILES
    try:
        local = snapshot_download(repo_id, allow_patterns=patterns)
    except LocalEntryNotFoundError as e:
        raise ModelUnavailableError(
            f"model {repo_id!r} is not in the Hugging Face cache here ({_cache_dir()}) and the Hugging Face Hub "
            f"cannot be reached from this machine ({first_line(e)}). Fix: on a machine that reaches the Hub, run "
            f"`python -m gpt2_core download {repo_id}`, then copy its cache folder (HF_HOME, by default "
            "~/.cache/huggingface) to this machine or point HF_HOME at the copy; or pass a local directory holding "
            f"{', '.join(files)}."
        ) from e
    except (RepositoryNotFoundError, HFValidationError) as e:
        raise ModelUnavailableError(
            f"{repo_id!r} is neither a local directory nor a model on the Hugging Face Hub ({first_line(e)})"
        ) from e
    return Path(local)


def first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _cache_dir() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return HF_HUB_CACHE


def read_config(checkpoint_dir: Path) -> GPTConfig:
    config_path = checkpoint_dir / "config.json"
    if not config_path.is_file():
        raise ModelUnavailableError(f"{checkpoint_dir} has no config.json: it is not a Hugging Face GPT-2 checkpoint")
    try:
        return GPTConfig.from_hf_dict(json.loads(config_path.read_text()))
    except json.JSONDecodeError as e:
        raise ModelUnavailableError(f"{config_path} is not valid JSON ({e}): the file is damaged or was edited; "
                                    "download or save the checkpoint again") from e


def safetensors_files(checkpoint_dir: Path) -> list[Path]:
    """The weight files: the shards named by model.safetensors.index.json, or model.safetensors."""
    index = checkpoint_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [checkpoint_dir / name for name in shards]
    single = checkpoint_dir / "model.safetensors"
    if single.is_file():
        return [single]
    pickles = [p.name for p in checkpoint_dir.glob("*.bin")] + [p.name for p in checkpoint_dir.glob("*.pt*")]
    found = f" (found {', '.join(sorted(pickles))})" if pickles else ""
    raise UnsafeCheckpointError(
        f"{checkpoint_dir} has no model.safetensors{found}. This loader reads safetensors only: pickle files such as "
        "pytorch_model.bin can run arbitrary code when loaded. Convert the checkpoint to safetensors "
        "(e.g. GPT2LMHeadModel.from_pretrained(dir).save_pretrained(out_dir)) and load that."
    )


class CheckpointTensors:
    """A checkpoint's tensors by our module names, read when asked for: in nn.Linear's layouts, cast to a dtype, on
    the CPU, each a copy of its own (a tensor left as a view of the file keeps the whole file mapped and resident:
    after int8 quantization, 99 small fp32 tensors kept gpt2's 475 MiB file in memory). Each read opens the files it
    needs and closes them after, so the pages it touched leave the process."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir
        self.where: dict[str, tuple[Path, str]] = {}  # our name -> (file, key in it)
        for file in safetensors_files(checkpoint_dir):
            try:
                with safe_open(file, framework="pt", device="cpu") as f:
                    keys = list(f.keys())
            except (SafetensorError, OSError) as e:
                raise ModelUnavailableError(f"{file} cannot be read as safetensors ({e}): the file is damaged or "
                                            "incomplete (an interrupted download or copy?); download or save the "
                                            "checkpoint again (from the Hub: delete its models--... folder in the "
                                            "Hugging Face cache first, or the download keeps the damaged file)") from e
            for key in keys:
                name = key.removeprefix("transformer.")
                if not MASK_BUFFER.fullmatch(name):
                    self.where[name] = (file, key)
        if "wte.weight" not in self.where:
            raise ModelUnavailableError(f"{checkpoint_dir} holds no GPT-2 weights (no wte.weight in its safetensors)")

    def names(self, prefix: str = "") -> list[str]:
        return [name for name in self.where if name.startswith(prefix)]

    def read(self, names: list[str], *, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for file in dict.fromkeys(self.where[name][0] for name in names):  # each file once, in order
            with safe_open(file, framework="pt", device="cpu") as f:
                for name in names:
                    where, key = self.where[name]
                    if where != file:
                        continue
                    tensor = f.get_tensor(key)
                    if name.endswith(CONV1D_SUFFIXES):
                        tensor = tensor.t()  # Conv1D stores (in, out); nn.Linear wants (out, in)
                    out[name] = tensor.to(dtype, copy=True).contiguous()
        return out


def read_outside_blocks(tensors: CheckpointTensors, config: GPTConfig, *, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The tensors outside the transformer blocks (embeddings, final norm), `lm_head.weight` tied to `wte.weight`."""
    names = [name for name in tensors.where if not name.startswith("h.")]
    state = tensors.read([name for name in names if name != "lm_head.weight"], dtype=dtype)
    expected = config.vocab_size, config.n_embd
    if tuple(state["wte.weight"].shape) != expected:
        raise ModelUnavailableError(f"wte.weight has shape {tuple(state['wte.weight'].shape)}, config.json says {expected}")
    if "lm_head.weight" in names:
        lm_head = tensors.read(["lm_head.weight"], dtype=dtype)["lm_head.weight"]
        if not torch.equal(lm_head, state["wte.weight"]):
            log.warning("%s has an lm_head.weight that differs from wte.weight; GPT-2 ties them, so wte.weight is "
                        "used", tensors.checkpoint_dir)
    state["lm_head.weight"] = state["wte.weight"]
    return state


def load_state_dict(checkpoint_dir: Path, config: GPTConfig, *, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Read all the weights at once into our module names and layouts (nn.Linear), cast to `dtype`, on the CPU (for
    training, which needs them all; inference loads block by block: `load_weights`)."""
    tensors = CheckpointTensors(checkpoint_dir)
    state = read_outside_blocks(tensors, config, dtype=dtype)
    state.update(tensors.read(tensors.names("h."), dtype=dtype))
    return state


def load_weights(model: GPT, checkpoint_dir: Path, *, dtype: torch.dtype,
                 prepare_block: Callable[[torch.nn.Module], None] | None = None) -> None:
    """Fill `model`, built on the meta device, from `checkpoint_dir`, one transformer block at a time, tying its LM
    head to the embedding. `prepare_block` runs on each block as soon as its weights are in (quantizing it), so a
    quantized model never holds all its full-precision weights at once: loading gpt2-xl in int8 needs about its
    int8 size plus one block, not its 6 GB of fp32 (README, Model sizes and memory)."""
    tensors = CheckpointTensors(checkpoint_dir)
    outside = read_outside_blocks(tensors, model.config, dtype=dtype)
    missing, unexpected = model.load_state_dict(outside, assign=True, strict=False)
    assert isinstance(model.lm_head, torch.nn.Linear)  # (quantized later, if at all)
    model.lm_head.weight = model.wte.weight  # assign=True replaced the tied parameter; tie it again
    if unexpected:
        raise ModelUnavailableError(f"{checkpoint_dir} has weights GPT-2 does not: {', '.join(sorted(unexpected))}")
    for i, block in enumerate(model.h):
        prefix = f"h.{i}."
        state = tensors.read(tensors.names(prefix), dtype=dtype)
        block.load_state_dict({name.removeprefix(prefix): t for name, t in state.items()}, assign=True)
        del state
        if prepare_block is not None:
            prepare_block(block)
    left = [name for name in missing if not name.startswith("h.") and name != "lm_head.weight"]
    extra = [name for name in tensors.names("h.") if int(name.split(".")[1]) >= len(model.h)]
    if left or extra:
        raise ModelUnavailableError(f"{checkpoint_dir} does not match its config.json: "
                                    f"missing {left or 'nothing'}, extra {extra or 'nothing'}")


def load_tokenizer(checkpoint_dir: Path) -> Tokenizer:
    """The checkpoint's own tokenizer through transformers (never trust_remote_code)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(checkpoint_dir), trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"cannot load the tokenizer from {checkpoint_dir}: {first_line(e)}") from e


def readable_as_umask_allows(path: Path) -> None:
    """Give a file safetensors wrote the mode any new file gets (safetensors writes 0600: a model trained by one user,
    or copied into a Space's image, could not be read by the user serving it)."""
    path.chmod(0o666 & ~_umask())


def _umask() -> int:
    """The process's umask, read where Linux shows it (setting it to read it would, for that moment, give any file
    another thread makes the wrong mode); elsewhere read by setting it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(model: GPT, directory: Path, *, tokenizer_dir: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write `model` (a GPT) in Hugging Face's GPT-2 layout: config.json, model.safetensors (Conv1D weights as (in,
    out), the LM head tied and so not stored) and the tokenizer files from `tokenizer_dir`. Both `load_model` and
    transformers' GPT2LMHeadModel.from_pretrained read it."""
    import shutil

    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        if name.endswith(CONV1D_SUFFIXES):
            tensor = tensor.t()  # nn.Linear (out, in) back to Conv1D (in, out)
        state["transformer." + name] = tensor.detach().to("cpu", dtype).contiguous()
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    readable_as_umask_allows(directory / "model.safetensors")
    hf = model.config.to_hf_dict() | {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}  # for inference
    (directory / "config.json").write_text(json.dumps(hf, indent=2))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        if (tokenizer_dir / name).is_file() and (tokenizer_dir / name).resolve() != (directory / name).resolve():
            shutil.copy(tokenizer_dir / name, directory / name)
    return directory
