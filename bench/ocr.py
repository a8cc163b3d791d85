"""OCR figures (issue 17): what the ragged[ocr] extra recovers, how fast, and what it costs
when no page needs it.

    .venv/bin/python bench/ocr.py               # all three parts (about 6 min on 2 cores)
    .venv/bin/python bench/ocr.py --pages 6     # fewer scanned pages
    .venv/bin/python bench/ocr.py --corpus /work/shared/bench/corpus   # from a worktree

1. corpus: the shared corpus's PDFs without a text layer, read through ragged's loader.
2. scans: the first page of each PDF in `pdf/rendered-docs` and `pdf/us-federal-public-domain`
   (whose text layer gives the truth) rendered to an image at --scan-dpi, slightly rotated
   and speckled like a scan, saved as an image-only PDF, then read by the loader: word
   recall against the text layer, and seconds per page.
3. overhead: PDFs that have a text layer, parsed and then ingested through the CLI with the
   extra installed and with it hidden (a sitecustomize that makes rapidocr
   unimportable, in the parent and in the parse workers alike). Fresh processes, alternated.

Needs the extra (`make install` has it) and ../shared/bench.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import machine  # noqa: E402

CORPUS = ROOT.parent / "shared" / "bench" / "corpus"
WORD = re.compile(r"[a-z0-9]{2,}")


def words(text: str) -> Counter[str]:
    return Counter(WORD.findall(text.lower()))


def recall(truth: str, found: str) -> float:
    """Share of the true words (with repeats) that OCR found: sum of min counts / true count."""
    want, got = words(truth), words(found)
    total = sum(want.values())
    return sum(min(n, got[w]) for w, n in want.items()) / total if total else 1.0


def corpus_part() -> dict[str, Any]:
    """Every PDF of the corpus that pypdf finds no text in, read with OCR."""
    import pypdf

    from ragged.errors import UnreadableDocument
    from ragged.ingest import ocr
    from ragged.ingest.loaders import load

    ocr._engine()  # load the models once, outside the timings
    rows = []
    for path in sorted((CORPUS / "pdf").rglob("*.pdf")):
        try:
            reader = pypdf.PdfReader(str(path))
            texts = [p.extract_text() or "" for p in reader.pages]
        except Exception:
            continue
        if any(t.strip() for t in texts):
            continue
        started = time.perf_counter()
        try:
            doc = load(path)
            text = "\n".join(s.text for s in doc.sections)
            outcome = f"{len(doc.sections)} pages with text"
        except UnreadableDocument as exc:
            text, outcome = "", exc.reason
        seconds = time.perf_counter() - started
        rows.append(
            {
                "file": str(path.relative_to(CORPUS)),
                "pages": len(texts),
                "seconds_per_page": round(seconds / max(1, len(texts)), 2),
                "chars": len(text),
                "outcome": outcome,
                "sample": text[:120],
            }
        )
    return {"files": rows}


def scan_image(pdf: Any, index: int, dpi: int) -> Any:
    """A page as a scanner would give it: grey, a little skewed, with specks."""
    import random

    from PIL import Image

    page = pdf[index]
    image = page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L")
    image = image.rotate(0.6, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    rng = random.Random(index)
    pixels = image.load()
    for _ in range(image.width * image.height // 2000):  # 0.05% specks
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        pixels[x, y] = rng.choice((0, 90, 255))
    return image


def scans_part(pages: int, dpi: int) -> dict[str, Any]:
    import pypdf
    import pypdfium2 as pdfium

    from ragged.ingest import ocr
    from ragged.ingest.loaders import load

    ocr._engine()
    results = []
    sources = sorted((CORPUS / "pdf" / "rendered-docs").glob("*.pdf")) + sorted(
        (CORPUS / "pdf" / "us-federal-public-domain").glob("*.pdf")
    )
    with tempfile.TemporaryDirectory() as tmp:
        for path in sources:
            if len(results) >= pages:
                break
            truth_pages = [p.extract_text() or "" for p in pypdf.PdfReader(str(path)).pages]
            pdf = pdfium.PdfDocument(str(path))
            for i, truth in enumerate(truth_pages[:1]):  # the first page of each file
                if len(truth.split()) < 40:
                    continue
                buf = io.BytesIO()
                scan_image(pdf, i, dpi).save(buf, "PDF", resolution=dpi)
                scanned = Path(tmp) / f"{path.stem}-p{i + 1}.pdf"
                scanned.write_bytes(buf.getvalue())
                started = time.perf_counter()
                doc = load(scanned)
                seconds = time.perf_counter() - started
                text = "\n".join(s.text for s in doc.sections)
                results.append(
                    {
                        "page": f"{path.name} p{i + 1}",
                        "true_words": sum(words(truth).values()),
                        "recall": round(recall(truth, text), 3),
                        "seconds": round(seconds, 2),
                        "sample_truth": " ".join(truth.split())[:200],
                        "sample_ocr": " ".join(text.split())[:200],
                    }
                )
            pdf.close()
    return {
        "dpi": dpi,
        "pages": results,
        "mean_recall": round(statistics.mean(r["recall"] for r in results), 3),
        "median_seconds_per_page": round(statistics.median(r["seconds"] for r in results), 2),
    }


PARSE = """
import sys, time
from pathlib import Path
from ragged.ingest import ocr
from ragged.ingest.loaders import load
paths = sys.argv[1:]
started = time.perf_counter()
pages = sum(len(load(Path(p)).sections) for p in paths)
seconds = time.perf_counter() - started
assert sys.modules.get("rapidocr") is None  # OCR never ran (None: hidden)
print(ocr.available(), pages, seconds)
"""


def overhead_part(repeats: int) -> dict[str, Any]:
    """Parse and ingest text-layer PDFs with the extra and with it hidden."""
    from ragged.errors import UnreadableDocument
    from ragged.ingest.loaders import load
    from tests.ollama_standin import OllamaStandIn

    # PDFs whose every page has a text layer: OCR is never needed for them.
    texty: list[Path] = []
    for path in sorted((CORPUS / "pdf").rglob("*.pdf")):
        try:
            doc = load(path)
        except UnreadableDocument:
            continue
        if doc.pages == len(doc.sections):
            texty.append(path)
    pages = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pdfs"
        folder.mkdir()
        for path in texty:
            shutil.copy(path, folder / path.name)
        hide = Path(tmp) / "hide-ocr"
        hide.mkdir()
        (hide / "sitecustomize.py").write_text(
            "import sys\nfor name in ('rapidocr',):\n    sys.modules[name] = None\n"
        )
        variants = {
            "with extra": {"PYTHONPATH": str(ROOT)},
            "extra hidden": {"PYTHONPATH": os.pathsep.join([str(hide), str(ROOT)])},
        }
        parse: dict[str, list[float]] = {k: [] for k in variants}
        ingest: dict[str, list[float]] = {k: [] for k in variants}
        with OllamaStandIn() as server:
            for r in range(repeats):
                for name, extra in variants.items():
                    env = {**os.environ, **extra, "OLLAMA_HOST": server.host}
                    done = subprocess.run(
                        [sys.executable, "-c", PARSE, *map(str, texty)],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    available, pages_s, seconds = done.stdout.split()
                    assert (available == "True") == (name == "with extra"), done.stdout
                    pages = int(pages_s)
                    parse[name].append(float(seconds))
                    env["RAGGED_HOME"] = str(Path(tmp) / f"home-{name}-{r}")
                    started = time.perf_counter()
                    done = subprocess.run(
                        [sys.executable, "-m", "ragged", "ingest", str(folder), "--json"],
                        env=env,
                        capture_output=True,
                        text=True,
                    )
                    ingest[name].append(time.perf_counter() - started)
                    assert json.loads(done.stdout)["failed"] == 0, done.stderr
    return {
        "files": len(texty),
        "pages_with_text": pages,
        "parse_seconds": {k: [round(x, 2) for x in v] for k, v in parse.items()},
        "parse_median": {k: round(statistics.median(v), 2) for k, v in parse.items()},
        "ingest_seconds": {k: [round(x, 2) for x in v] for k, v in ingest.items()},
        "ingest_median": {k: round(statistics.median(v), 2) for k, v in ingest.items()},
    }


def main() -> int:
    global CORPUS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=18, help="scanned pages to read")
    parser.add_argument("--scan-dpi", type=int, default=150, help="resolution of the scans")
    parser.add_argument("--repeats", type=int, default=3, help="overhead runs per variant")
    parser.add_argument("--skip", nargs="*", default=[], choices=["corpus", "scans", "overhead"])
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="the shared corpus folder")
    args = parser.parse_args()
    CORPUS = args.corpus
    if not CORPUS.is_dir():
        print(f"{CORPUS} is absent", file=sys.stderr)
        return 2
    from ragged.ingest import ocr

    if not ocr.available():
        print("the ragged[ocr] extra is not installed", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"machine": machine()}
    if "corpus" not in args.skip:
        out["corpus"] = corpus_part()
    if "scans" not in args.skip:
        out["scans"] = scans_part(args.pages, args.scan_dpi)
    if "overhead" not in args.skip:
        out["overhead"] = overhead_part(args.repeats)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
