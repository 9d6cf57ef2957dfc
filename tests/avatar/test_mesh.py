"""The warp itself, on real photos and a real talking track.

Inside a triangle, a piecewise-affine warp moves each pixel by a blend of its corners'
movements, so no pixel may move further than the furthest-moving vertex. A squeezed or
folded triangle breaks that: its inverse blows up and reads specks of hair or collar from
far away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secretary import audio
from secretary.avatar import facemesh as mesh
from secretary.avatar.engine import EXPRESSIONS, Pose
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.poses import talking_poses
from secretary.catalog import ModelStore
from secretary.config import AvatarSettings
from tests.helpers import FACES, SPEECH


@pytest.fixture(scope="module")
def engine(cache_dir: Path):
    engine = MeshWarpEngine(AvatarSettings(_env_file=None), ModelStore(cache_dir / "models"))
    yield engine
    engine.close()


def excess_reach(engine: MeshWarpEngine, key: str, pose: Pose) -> float:
    """Pixels: how much further than any vertex moved a pixel of the region reads from."""
    source = engine._source(key)
    variant = engine._variant(source, None)
    warper = variant.warper
    shift = mesh.extend_to_rings(engine.displacement(source, pose))
    map_x, map_y, _ = warper.source_maps(warper.vertices + shift)
    ys, xs = np.mgrid[warper.y0:warper.y1, warper.x0:warper.x1]
    reach = np.hypot(map_x - xs, map_y - ys).max()
    return float(reach - np.hypot(shift[:, 0], shift[:, 1]).max())


@pytest.mark.parametrize("photo", ["astronaut_eileen_collins.png", "pexels_woman_neutral.jpg"])
def test_no_pixel_moves_further_than_the_mesh(engine: MeshWarpEngine, photo: str) -> None:
    key = engine.prepare((FACES / photo).read_bytes()).key
    clip = audio.decode(SPEECH / "en_cmu_arctic_axb_a0004.wav", 24000)
    poses = list(talking_poses(clip.samples, clip.sample_rate, 25))
    poses += [Pose(name, 2.0, "open", 1.0, yaw=10, pitch=-10, roll=10) for name in EXPRESSIONS]
    excess = max(excess_reach(engine, key, pose) for pose in poses)
    assert excess < 1.5, f"a pixel reads {excess:.1f} px further than the mesh moved"
