"""``secretary transcribe`` as the README shows it: a progress bar for long files on a
terminal, and ``--task translate`` to English."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np

from secretary import audio
from tests.helpers import SPEECH, speech_clips
from tests.test_cli import _env, _secretary


def test_long_file_shows_a_progress_bar_on_a_terminal(cache_dir: Path, tmp_path: Path
                                                       ) -> None:
    gap = np.zeros(16000, np.float32)
    clips = speech_clips("en")
    samples = np.concatenate([p for c in clips for p in (audio.decode(c).samples, gap)])
    long = tmp_path / "interview.wav"
    long.write_bytes(audio.encode(samples, 16000, "wav"))  # 55 s: "long" is 30 s or more
    master, terminal = pty.openpty()  # stderr is a terminal, as in a user's shell
    # 24 rows of 100 columns (a new pseudo-terminal has 0 columns: no room for a bar).
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    result = subprocess.Popen(
        [sys.executable, "-m", "secretary", "transcribe", str(long), "--format", "text"],
        env=_env(cache_dir), stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stdout, _ = result.communicate(timeout=300)
    reader.join(timeout=10)
    os.close(master)
    assert result.returncode == 0
    assert "apostle of the middle classes" in stdout
    bar = b"".join(shown).decode(errors="replace")
    # tqdm's bar: the file name, a percentage and seconds of audio done out of the total.
    assert "interview.wav" in bar and re.search(r"\d+%", bar), bar
    assert re.search(r"/55\.1 \[", bar), bar  # seconds done / 55.1 s in all
    # A short file, or no terminal, shows none.
    plain = _secretary("transcribe", str(long), "--format", "text", env=_env(cache_dir))
    assert plain.returncode == 0 and "%" not in plain.stderr


def test_translate_task_gives_english(cache_dir: Path) -> None:
    german = SPEECH / "de_thorsten_plan_geklappt.wav"  # "Euer Plan hat ja toll geklappt."
    result = _secretary("transcribe", str(german), "--task", "translate", "--format", "text",
                        env=_env(cache_dir))
    assert result.returncode == 0, result.stderr
    words = set(re.findall(r"[a-z]+", result.stdout.lower()))
    assert {"your", "plan"} <= words and not words & {"euer", "hat", "geklappt"}, words
