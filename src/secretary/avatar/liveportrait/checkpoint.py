"""The published checkpoint layout: which file holds which network, loading and saving it.

The human model on the hub (``KwaiVGI/LivePortrait``) is five ``.pth`` files under
``liveportrait/``: four plain state dicts (F, M, W, G) and one file holding three state
dicts for the stitching, lip and eye modules, their keys prefixed ``module.`` (they were
saved from data-parallel training). ``layout.json`` beside this file lists every key and
shape, so a checkpoint that does not fit fails with the names of what is wrong.

A folder may also hold ``architecture.json`` (not part of the published layout): a smaller
model of the same architecture, which tests build, names its sizes there.

torch only, like ``networks``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from secretary.avatar.liveportrait.files import (
    ARCHITECTURE_FILE,
    FILES,
    RETARGETING,
    RETARGETING_GROUPS,
    find_root,
    missing_files,
)
from secretary.avatar.liveportrait.networks import Architecture, Networks

# BatchNorm's step counter: kept when present, never needed for inference.
_OPTIONAL_SUFFIX = "num_batches_tracked"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing files or does not fit the networks."""


def architecture_of(root: Path) -> Architecture:
    path = root / ARCHITECTURE_FILE
    if not path.is_file():
        return Architecture()
    try:
        return Architecture.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def load_networks(folder: Path, device: torch.device | str = "cpu") -> Networks:
    """Build the networks and fill them from the checkpoint files in ``folder``."""
    root = find_root(folder)
    missing = missing_files(root)
    if missing:
        raise CheckpointError(f"{root} lacks {', '.join(missing)}")
    # Built without memory (meta tensors) and then given the file's tensors: no random
    # initialisation of 130 million weights that the files replace anyway.
    with torch.device("meta"):
        networks = Networks.build(architecture_of(root))
    modules = networks.modules()
    for name, relative in FILES.items():
        _fill(modules[name], _read(root / relative), relative)
    groups = _read(root / RETARGETING)
    for name, group in RETARGETING_GROUPS.items():
        if group not in groups:
            raise CheckpointError(f"{RETARGETING} has no {group!r} entry")
        state = {key.removeprefix("module."): value for key, value in groups[group].items()
                 if isinstance(value, torch.Tensor)}
        _fill(modules[name], state, f"{RETARGETING}:{group}")
    networks.generator.fold_spectral_norm()
    return networks.eval().to(device)


def save_networks(networks: Networks, folder: Path) -> Path:
    """Write ``networks`` in the published layout (and ``architecture.json`` when they are
    not the published size)."""
    folder = Path(folder)
    modules = networks.modules()
    for name, relative in FILES.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(modules[name].state_dict(), path)
    (folder / RETARGETING).parent.mkdir(parents=True, exist_ok=True)
    torch.save({group: {f"module.{key}": value
                        for key, value in modules[name].state_dict().items()}
                for name, group in RETARGETING_GROUPS.items()}, folder / RETARGETING)
    if networks.arch != Architecture():
        (folder / ARCHITECTURE_FILE).write_text(json.dumps(networks.arch.to_dict(), indent=1))
    return folder


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise CheckpointError(f"{path} could not be read: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def _fill(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    problems = []
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CheckpointError(f"{what} does not fit the LivePortrait networks; "
                              + "; ".join(problems))
    module.load_state_dict(state, strict=False, assign=True)
    for name, tensor in module.state_dict().items():
        if tensor.is_meta:  # an optional counter the file does not have
            owner, _, attribute = name.rpartition(".")
            setattr(module.get_submodule(owner), attribute, torch.zeros((), dtype=torch.long))
