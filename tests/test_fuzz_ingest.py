"""Generated odd file names and contents through a real `ragged ingest` process (issue 11).

Seeded, so a failure repeats: random bytes, mixed encodings, byte-order marks, control
characters, very long lines and words, names that are not UTF-8 or hold escapes. After each
run: no traceback, every file stored or named with a reason, the catalog and the store agree.
"""

from __future__ import annotations

import codecs
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ragged.ingest.walk import shown
from tests.ollama_standin import OllamaStandIn
from tests.test_ingest_robust import environ, stored_ids

RAGGED = [sys.executable, "-m", "ragged"]
SUFFIXES = [".md", ".txt", ".rst", ".html", ".htm", ".markdown", ".MD", ".TXT"]
WORDS = "alpha beta gamma delta river mountain échelle Straße 東京 данные قمر 🙂".split()


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _name(rng: random.Random, i: int) -> bytes:
    """A file name as bytes: plain, Unicode, with escapes, not UTF-8, very long, glob-like."""
    stem = rng.choice(
        [
            f"plain{i}",
            f"spaces and 'quotes' {i}",
            f"-dash{i}",
            f"ünïcødé-東京-{i}",
            f"emoji🙂{i}",
            f"rtl\u202etxt.exe{i}",
            f"esc\x1b[2J\x1b[31m{i}",
            f"bell\x07tab\t{i}",
            f"new\nline{i}",
            f"glob[*?]{i}",
            f"back\\slash{i}",
            "L" * rng.randint(100, 200) + str(i),
        ]
    )
    raw = stem.encode()
    if rng.random() < 0.15:
        raw += b"-caf\xe9"  # latin-1: not UTF-8
    return raw + rng.choice(SUFFIXES).encode()


def _content(rng: random.Random) -> bytes:
    kind = rng.randrange(16)
    text = f"# {_words(rng, 3)}\n\n{_words(rng, 60)}\n\n## {_words(rng, 2)}\n\n{_words(rng, 40)}\n"
    makers: list[Callable[[], bytes]] = [
        lambda: text.encode(),
        lambda: rng.randbytes(rng.randint(1, 5000)),  # random bytes
        lambda: b"",
        lambda: codecs.BOM_UTF8,
        lambda: rng.choice([codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE]),
        lambda: text.encode("utf-16"),
        lambda: text.encode(rng.choice(["utf-16-le", "utf-16-be"])),
        lambda: text.encode("utf-32"),
        lambda: text.encode("utf-8")[:200] + "déjà vu crème".encode("latin-1") + text.encode(),
        lambda: (text + "\x1b[2J\x07\x00\x9b\u202e" * 5 + text).encode(),
        lambda: ("x" * rng.randint(100_000, 400_000)).encode(),  # one very long word
        lambda: (_words(rng, 30_000)).encode(),  # one very long line
        lambda: ("#" * 5000 + " deep\n" + "<h1>" * 3000 + text).encode(),
        lambda: ("<html><body>" + "<div>" * 2000 + text + "<script>x</script>").encode(),
        lambda: "\r\n".join(text.split("\n")).encode("cp1252", errors="replace"),
        lambda: rng.randbytes(100) + text.encode(),
    ]
    return makers[kind]()


@pytest.mark.parametrize("seed", [1, 2])
def test_odd_names_and_contents_through_a_real_ingest(
    ollama: OllamaStandIn, env: Path, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    made: set[str] = set()
    for i in range(50):
        folder = os.fsencode(docs / ("sub" if i % 3 else ""))
        path = os.path.join(folder, _name(rng, i))
        with open(path, "wb") as fh:
            fh.write(_content(rng))
        made.add(shown(os.path.realpath(path)))
    # Whole folders named oddly, and an odd name given on the command line.
    odd_dir = os.fsencode(docs) + b"/d\xe9j\xe0"
    os.mkdir(odd_dir)
    with open(odd_dir + b"/inside.md", "wb") as fh:
        fh.write(b"# Inside\n\nText.\n")
    made.add(shown(odd_dir))

    def ingest() -> dict:  # type: ignore[type-arg]
        done = subprocess.run(
            [*RAGGED, "ingest", str(docs), "--json"],
            env=environ(env, ollama),
            capture_output=True,
            text=True,
            errors="backslashreplace",
            timeout=600,
        )
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert done.returncode in (0, 1), done.stderr[-3000:]
        report = json.loads(done.stdout)
        assert report["pending"] == 0 and report["embed_error"] is None
        return report  # type: ignore[no-any-return]

    report = ingest()
    listing = subprocess.run(
        [*RAGGED, "list", "--json"], env=environ(env, ollama), capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    sources = json.loads(listing.stdout)
    stored = {s["path"] for s in sources if s["status"] in ("ok", "pending")}
    problems = {p["path"]: p["reason"] for p in report["problems"]}
    # Every file is stored, or named with a reason; nothing else appears.
    assert made == stored | set(problems), (
        made - stored - set(problems),
        (stored | set(problems)) - made,
    )
    assert all(reason.strip() for reason in problems.values())
    assert report["added"] == len(stored)
    chroma, catalog, pending = stored_ids(env)
    assert chroma == catalog and pending == 0

    # Again: nothing new is stored or fails differently, and nothing breaks.
    again = ingest()
    assert again["added"] == again["updated"] == 0
    assert again["unchanged"] == len(stored)
    assert stored_ids(env)[:2] == (chroma, catalog)

    # What people read stays free of raw control characters.
    for argv in (["list"], ["search", "river mountain"]):
        out = subprocess.run(
            [*RAGGED, *argv], env=environ(env, ollama), capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in out.stdout + out.stderr
