"""The published file layout of the LivePortrait human model (no torch needed).

The hub repository ``KwaiVGI/LivePortrait`` holds, under ``liveportrait/``, four plain
state dicts (F, M, W, G) and one file with three state dicts for the stitching, lip and
eye modules. ``layout.json`` beside this file lists every key and shape in them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HUB_ID = "KwaiVGI/LivePortrait"
BASE = "liveportrait/base_models"
FILES = {
    "appearance": f"{BASE}/appearance_feature_extractor.pth",
    "motion": f"{BASE}/motion_extractor.pth",
    "warping": f"{BASE}/warping_module.pth",
    "generator": f"{BASE}/spade_generator.pth",
}
RETARGETING = "liveportrait/retargeting_models/stitching_retargeting_module.pth"
# Our module name -> the key of its state dict inside RETARGETING.
RETARGETING_GROUPS = {"stitching": "retarget_shoulder", "lip": "retarget_mouth",
                      "eye": "retarget_eye"}
# Not part of the published layout: a smaller model of the same architecture (tests build
# one) names its sizes here.
ARCHITECTURE_FILE = "architecture.json"
ALL_FILES = (*FILES.values(), RETARGETING)
LAYOUT_PATH = Path(__file__).with_name("layout.json")


def layout() -> dict[str, Any]:
    """The published layout: ``{file: {key: shape}}`` (the retargeting file one level
    deeper, by group)."""
    return json.loads(LAYOUT_PATH.read_text())["files"]


def find_root(folder: Path) -> Path:
    """The folder that holds ``liveportrait/``: the given one (a hub snapshot, or the
    official ``pretrained_weights``), or its parent when given ``liveportrait`` itself."""
    folder = Path(folder)
    if (folder / BASE).is_dir():
        return folder
    if (folder / "base_models").is_dir() and folder.name == "liveportrait":
        return folder.parent
    return folder


def missing_files(root: Path) -> list[str]:
    return [name for name in ALL_FILES if not (root / name).is_file()]
