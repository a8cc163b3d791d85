"""Benchmark documents: the shared real corpus, and synthetic markdown scaled to N chunks.

Synthetic text is drawn word by word from the real corpus's own word frequencies, so the
tokenizer, the keyword index (BM25 posting lists) and the stand-in's hashed-word vectors
all see a realistic distribution. Every file gets its own random text: identical files
would be copied from each other's vectors instead of embedded.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPUS = ROOT.parent / "shared" / "bench" / "corpus"
VOCABULARY_SIZE = 20_000
WORDS_PER_SENTENCE = 14
SENTENCES_PER_PARAGRAPH = 5
PARAGRAPHS_PER_SECTION = 3
# A synthetic file holds this many paragraphs: ~70 words each, ~3,500 words, which the
# default 512-token chunks with 64 overlap cut into about 10 chunks.
PARAGRAPHS_PER_FILE = 50
FILES_PER_FOLDER = 500  # keeps directories a realistic size for the walker
WORD = re.compile(r"[a-z][a-z0-9_]+")


@dataclass(frozen=True)
class Vocabulary:
    words: np.ndarray  # of str
    probs: np.ndarray  # of float, sums to 1

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n words by frequency; searchsorted on the CDF, since rng.choice(p=...) costs O(V) a call."""
        cdf = np.cumsum(self.probs)
        return self.words[np.minimum(np.searchsorted(cdf, rng.random(n)), len(self.words) - 1)]


def vocabulary(corpus: Path = SHARED_CORPUS) -> Vocabulary:
    """The corpus's most frequent words and their frequencies; pseudo-words if it is missing."""
    counts: Counter[str] = Counter()
    markdown = corpus / "markdown"
    if markdown.is_dir():
        for path in sorted(markdown.rglob("*.md")):
            counts.update(WORD.findall(path.read_text(errors="replace").lower()))
    if len(counts) < 1000:
        # Zipf's law over made-up words: the shape of natural text without the corpus.
        rng = np.random.default_rng(7)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        for rank in range(1, VOCABULARY_SIZE + 1):
            word = "".join(rng.choice(letters, size=int(rng.integers(3, 10))))
            counts[word] = max(counts[word], int(1_000_000 / rank))
    top = counts.most_common(VOCABULARY_SIZE)
    words = np.array([w for w, _ in top], dtype=object)
    freq = np.array([c for _, c in top], dtype=np.float64)
    return Vocabulary(words, freq / freq.sum())


def markdown_file(vocab: Vocabulary, rng: np.random.Generator, paragraphs: int) -> str:
    per_paragraph = WORDS_PER_SENTENCE * SENTENCES_PER_PARAGRAPH
    words = vocab.draw(rng, paragraphs * per_paragraph + 4 + 3 * paragraphs).tolist()
    title, words = words[:4], words[4:]
    parts = [f"# {' '.join(title).title()}"]
    for i in range(paragraphs):
        if i and i % PARAGRAPHS_PER_SECTION == 0:
            heading, words = words[:3], words[3:]
            parts.append(f"## {' '.join(heading).title()}")
        para, words = words[:per_paragraph], words[per_paragraph:]
        parts.append(
            " ".join(
                " ".join(para[j : j + WORDS_PER_SENTENCE]).capitalize() + "."
                for j in range(0, per_paragraph, WORDS_PER_SENTENCE)
            )
        )
    return "\n\n".join(parts) + "\n"


def chunks_per_file(vocab: Vocabulary, paragraphs: int = PARAGRAPHS_PER_FILE) -> float:
    """How many chunks ragged's own chunker makes of one synthetic file (mean of a few)."""
    from ragged.ingest.chunking import chunk
    from ragged.ingest.loaders import load

    rng = np.random.default_rng(12345)
    counts = []
    for i in range(4):
        path = Path(f"probe{i}.md")
        text = markdown_file(vocab, rng, paragraphs)
        counts.append(len(chunk(load(path, text.encode()))))
    return sum(counts) / len(counts)


def write_synthetic(
    dest: Path,
    chunks: int,
    vocab: Vocabulary,
    *,
    seed: int = 0,
    paragraphs: int = PARAGRAPHS_PER_FILE,
    per_file: float | None = None,
) -> int:
    """Write enough synthetic markdown files under `dest` for about `chunks` chunks; returns files."""
    per_file = per_file or chunks_per_file(vocab, paragraphs)
    files = max(1, math.ceil(chunks / per_file))
    rng = np.random.default_rng(seed)
    for i in range(files):
        folder = dest / f"part{i // FILES_PER_FOLDER:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"doc{i:06d}.md").write_text(markdown_file(vocab, rng, paragraphs))
    return files


def write_small_files(dest: Path, count: int, vocab: Vocabulary, *, seed: int = 1) -> None:
    """`count` one-chunk notes, like the tldr pages: for per-file overhead."""
    rng = np.random.default_rng(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (dest / f"note{i:05d}.md").write_text(markdown_file(vocab, rng, 2))


def queries(vocab: Vocabulary, count: int, *, seed: int = 2) -> list[str]:
    """Questions of 3 to 6 words: one or two common words, the rest rarer content words.

    Common words (the 300 most frequent) match most chunks and make the keyword search scan
    long posting lists; content words (ranks 300-8,000) are what picks the passage out. A
    question drawn purely by frequency would be nearly all common words, a harsher load
    than people's questions; a purely rare one, a gentler one.
    """
    rng = np.random.default_rng(seed)
    common, content = vocab.words[:300], vocab.words[300:8000]
    out = []
    for _ in range(count):
        words = list(rng.choice(common, size=int(rng.integers(1, 3))))
        words += list(rng.choice(content, size=int(rng.integers(2, 5))))
        rng.shuffle(words)
        out.append("how do I " + " ".join(words) + "?")
    return out


def questions_from(folder: Path, count: int, *, seed: int = 4) -> list[str]:
    """Questions built from words of files in `folder`, so a small store surely has answers."""
    rng = np.random.default_rng(seed)
    files = sorted(folder.rglob("*.md"))[:count]
    out = []
    for path in files:
        words = [w for w in WORD.findall(path.read_text().lower()) if len(w) > 3]
        picked: list[str] = (
            list(rng.choice(words, size=min(4, len(words)), replace=False)) if words else []
        )
        out.append("how do I " + " ".join(picked) + "?")
    return out


# Questions a user of the real corpus (FastAPI, Typer, SQLModel docs, tldr pages) would ask.
CORPUS_QUESTIONS = (
    "How do I declare a path parameter with a type in FastAPI?",
    "How can a Typer command take an optional argument with a default?",
    "How do I create a table with SQLModel and add rows to it?",
    "What does the tar command do to extract an archive?",
    "How do I return a custom status code from a FastAPI endpoint?",
    "How do I print colored output with Typer and rich?",
    "How do I use dependencies with yield in FastAPI?",
    "How can I list files sorted by size with ls?",
)
