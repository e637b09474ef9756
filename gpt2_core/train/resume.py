"""What a stopped run needs to go on (as nanoGPT's init_from='resume'), saved safely: safetensors and JSON, no pickle.

`DIR/resume/state.safetensors` holds AdamW's moments and step counts, the batch generator's and torch's RNG states,
and, when the model was saved in fp16, its fp32 master weights; `DIR/resume/state.json` holds the rest: the recipe,
the step, the total steps, the tokens seen, the evaluations so far, the text's hash and the optimizer's settings.
The model itself is DIR's model.safetensors (when fp32), read as `load_model` reads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from gpt2_core.checkpoint import readable_as_umask_allows

FOLDER = "resume"


@dataclass
class ResumeState:
    info: dict[str, Any]  # step, total_steps, tokens_seen, elapsed_s, evaluations, recipe, text_sha256, bf16_autocast, ...
    tensors: dict[str, torch.Tensor]

    @property
    def master_weights(self) -> dict[str, torch.Tensor] | None:
        """fp32 weights by parameter name, kept here when the saved model is fp16; None when it is fp32."""
        weights = {k.removeprefix("model."): v for k, v in self.tensors.items() if k.startswith("model.")}
        return weights or None


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_resume(directory: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                generator: torch.Generator, keep_master_weights: bool, info: dict[str, Any]) -> None:
    folder = directory / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    state = optimizer.state_dict()
    tensors = {"rng.batches": generator.get_state(), "rng.torch": torch.get_rng_state()}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    if keep_master_weights:
        tensors |= {f"model.{name}": p.detach().float().contiguous() for name, p in model.named_parameters()}
    save_file(tensors, folder / "state.safetensors", metadata={"format": "pt"})
    readable_as_umask_allows(folder / "state.safetensors")
    (folder / "state.json").write_text(json.dumps(info | {"optimizer_groups": state["param_groups"]}, indent=1))


def read_resume(directory: Path) -> ResumeState:
    folder = Path(directory) / FOLDER
    if not (folder / "state.json").is_file() or not (folder / "state.safetensors").is_file():
        raise ValueError(f"`resume` has to be the folder of a stopped or finished run (with {FOLDER}/state.json), "
                         f"but {str(directory)!r} has none")
    return ResumeState(json.loads((folder / "state.json").read_text()), load_file(folder / "state.safetensors"))


def restore(state: ResumeState, *, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    """Put the optimizer's moments and the RNG states back as they were when the run stopped."""
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": state.info["optimizer_groups"]})
    generator.set_state(state.tensors["rng.batches"])
    torch.set_rng_state(state.tensors["rng.torch"])
