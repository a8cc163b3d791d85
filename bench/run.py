"""`make bench`: ragged's own overhead against an Ollama whose busy time is known (issues 7, 15).

Every figure is measured through ragged's real code, in fresh processes, against the Ollama
stand-in (tests/ollama_standin.py) running in a process of its own with a fixed cost per
embedded item and per generated token, so Ollama's own busy time is known exactly:

    .venv/bin/python bench/run.py                 # the full table (about 8-13 min)
    .venv/bin/python bench/run.py --quick         # smaller sizes, fewer repetitions (~1 min)
    .venv/bin/python bench/run.py --profile DIR   # pyinstrument profiles instead of the table

See docs/benchmarks.md ("## Performance") for what each row means and the latest results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import corpus as synth  # noqa: E402
from bench.standin import StandInProcess  # noqa: E402
from bench.timing import (  # noqa: E402
    RAGGED,
    WORKER,
    machine,
    median,
    percentile,
    run,
    time_to_first_byte,
    worker,
)

# The targets of issues 7 and 15.
STARTUP_RATIO = 1.5  # ragged --help / --version vs `python -c "import typer"`
BUSY_RATIO = 1.15  # ingest wall time / time Ollama was busy, docs and tldr corpora
BUSY_RATIO_PDF = 2.0  # the same for the PDFs
PEER_SPEEDUP = 3.0  # ragged at least this much faster than LlamaIndex use_async
REINGEST_S = 1.0  # unchanged 2,000-file folder, beyond start-up
SEARCH_P95_MS = 100.0  # at 100k chunks, beyond the embedding call
SEARCH_FLOOR_RATIO = 1.03  # `ragged search` wall / the floor script's (bench/floor.py)
ASK_FLOOR_RATIO = 1.10  # `ragged ask` time to first byte beyond the model's own / the floor's
PEAK_RSS_MB = 600.0  # ingest of 100k chunks

# Must not be imported by --help/--version, nor by an unchanged re-ingest.
HEAVY = ("chromadb", "ollama", "pypdf", "tiktoken")
CHAT_MODEL = "llama3.2:3b"  # one the stand-in serves
REINGEST_FILES = 2000
SECTIONS = ("startup", "ingest", "reingest", "cold", "scale")
# The corpora of issue 15's table, as parts of the shared corpus: (name, folders, target).
# "pdf" is read as 0.1.0 read it, without OCR (the target was set for text layers);
# "pdf+ocr" is the same folder with the ragged[ocr] extra, whose scanned pages cost seconds
# of CPU each: reported, with no target of its own (docs/benchmarks.md, "## OCR").
CORPORA: tuple[tuple[str, tuple[str, ...], float | None], ...] = (
    ("docs", ("markdown/fastapi", "markdown/sqlmodel", "markdown/typer"), BUSY_RATIO),
    ("tldr", ("markdown/tldr-common",), BUSY_RATIO),
    ("pdf", ("pdf",), BUSY_RATIO_PDF),
    ("pdf+ocr", ("pdf",), None),
)
# --quick: smaller parts of the same, ~1 min of work.
QUICK_CORPORA: tuple[tuple[str, tuple[str, ...], float | None], ...] = (
    ("docs", ("markdown/typer",), BUSY_RATIO),
    ("pdf", ("pdf/rendered-docs",), BUSY_RATIO_PDF),
)
# Put first on a child's PYTHONPATH, this hides the OCR extra (as if not installed).
HIDE_OCR = "import sys\nsys.modules['rapidocr'] = None\n"
PEERS = ("llamaindex", "langchain")
PDF_REPS = 7  # default runs of the "pdf" corpus (3 for the others)
AGAINST = "against"  # ragged at the revision given by --against, as a tool of its own
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"

IMPORT_CHECK = """
import sys
sys.argv = ["ragged", *{args!r}]
from ragged.cli import app
try:
    app()
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


@dataclass
class Row:
    section: str
    measure: str
    value: str
    target: str = ""
    status: str = "info"  # PASS | MISS | info


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        section: str,
        measure: str,
        value: str,
        target: str = "",
        ok: bool | None = None,
    ) -> None:
        status = "info" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append(Row(section, measure, value, target, status))


def heavy_imports(args: Sequence[str], heavy: Sequence[str], env: dict[str, str]) -> str:
    """Which of `heavy` a `ragged ARGS` run imported, comma-separated ("" for none)."""
    done = run([sys.executable, "-c", IMPORT_CHECK.format(args=list(args), heavy=heavy)], env)
    line = next((x for x in done.stderr.splitlines() if x.startswith("HEAVY=")), None)
    return line[len("HEAVY=") :] if line is not None else "?"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def log(message: str) -> None:
    """Progress on stderr, so --json output stays clean."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, server: StandInProcess) -> None:
        self.args = args
        self.tmp = tmp
        self.server = server
        self.results = Results()
        self.vocab = synth.vocabulary(args.corpus)
        self.corpus_in_reingest = False  # whether the re-ingest store holds the real markdown
        # --against: that revision's files, compiled, to ingest with beside this checkout.
        self.against = export_revision(args.against, tmp / "against") if args.against else None

    def env(self, home: Path) -> dict[str, str]:
        """A child's environment: nothing of the user's ragged setup, our stand-in, our home."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("RAGGED_") and k not in ("OLLAMA_HOST", "FORCE_COLOR")
        }
        env.update(
            RAGGED_HOME=str(home),
            OLLAMA_HOST=self.server.host,
            RAGGED_CHAT_MODEL=CHAT_MODEL,
            RAGGED_EMBED_CONCURRENCY=str(self.args.concurrency),
            ANONYMIZED_TELEMETRY="False",
            TERMINAL_WIDTH="120",
            NO_COLOR="1",
        )
        if self.args.embed_batch:
            env["RAGGED_EMBED_BATCH"] = str(self.args.embed_batch)
        return env

    # -- start-up ------------------------------------------------------------------------

    def startup(self) -> None:
        reps = self.args.reps or (8 if self.args.quick else 25)
        env = self.env(self.tmp / "startup-home")
        commands = {
            "import typer": [sys.executable, "-c", "import typer"],
            "ragged --help": [RAGGED, "--help"],
            "ragged --version": [RAGGED, "--version"],
        }
        names = list(commands)
        for name in names:  # one untimed pass: the page cache, .pyc files
            run(commands[name], env, capture=False)
        times: dict[str, list[float]] = {name: [] for name in names}
        log(f"start-up: {reps} interleaved runs of {', '.join(names)}")
        for rep in range(reps):
            # Interleaved, rotating the order, so drift in the machine's load hits all three.
            for i in range(len(names)):
                name = names[(rep + i) % len(names)]
                times[name].append(run(commands[name], env, capture=False).seconds)
        base = median(times["import typer"])
        r = self.results
        r.data["startup"] = {name: median(t) for name, t in times.items()}
        r.data["startup"]["reps"] = reps
        r.add("start-up", "python -c 'import typer' (median)", ms(base))
        for name in ("ragged --help", "ragged --version"):
            value = median(times[name])
            r.add("start-up", f"{name} (median)", ms(value))
            r.add(
                "start-up",
                f"{name} / import typer",
                f"{value / base:.2f}x",
                f"<= {STARTUP_RATIO}x",
                value / base <= STARTUP_RATIO,
            )
        for arg in ("--help", "--version"):
            heavy = heavy_imports([arg], HEAVY, env)
            r.data["startup"][f"heavy_imports {arg}"] = heavy
            r.add(
                "start-up",
                f"heavy modules imported by {arg}",
                heavy or "none",
                "none of " + "/".join(HEAVY),
                heavy == "",
            )

    # -- ingest against a busy Ollama, side by side with the peers -----------------------

    def corpora(self) -> list[tuple[str, list[Path], float | None]]:
        """The corpora to ingest: issue 15's three parts of the shared corpus, or all of --corpus."""
        from ragged.ingest import ocr

        root: Path = self.args.corpus
        chosen = []
        for name, parts, target in QUICK_CORPORA if self.args.quick else CORPORA:
            if name == "pdf+ocr" and not ocr.available():
                continue  # the same as "pdf" without the extra
            paths = [root / p for p in parts]
            if all(p.is_dir() for p in paths):
                chosen.append((name, paths, target))
        return chosen or [("corpus", [root], BUSY_RATIO)]

    def peers_python(self) -> Path | None:
        python: Path = self.args.peers_python
        return python if python.exists() and not self.args.no_peers else None

    def ingest_once(
        self, tool: str, paths: list[Path], where: Path, ocr: bool = True
    ) -> dict[str, Any]:
        """One ingest by ragged (in-process ingest()) or a peer; wall and Ollama's busy time."""
        self.server.reset()
        if tool in ("ragged", AGAINST):
            env = self.env(where)
            if not ocr:
                hide = self.tmp / "hide-ocr"
                hide.mkdir(exist_ok=True)
                (hide / "sitecustomize.py").write_text(HIDE_OCR)
                env["PYTHONPATH"] = os.pathsep.join([str(hide), env.get("PYTHONPATH", "")])
            script = WORKER
            if tool == AGAINST and self.against is not None:
                script = str(self.against / "bench" / "worker.py")
            res = worker({"op": "ingest", "paths": [str(p) for p in paths]}, env, script)
            wall, chunks, embedded = res["ingest_s"], res["chunks"], res["embedded"]
        else:
            done = run(
                [str(self.peers_python()), str(ROOT / "bench" / "peers.py"), tool]
                + [self.server.host, str(where), *map(str, paths)],
                {**self.env(where), "ANONYMIZED_TELEMETRY": "False"},
            )
            line = next((x for x in reversed(done.stdout.splitlines()) if x.startswith("{")), "")
            if done.returncode != 0 or not line:
                raise RuntimeError(f"peer {tool} failed:\n{done.stderr[-3000:]}")
            res = json.loads(line)
            wall, chunks, embedded = res["seconds"], res["chunks"], res["chunks"]
        stats = self.server.stats()
        shutil.rmtree(where, ignore_errors=True)
        return {"wall": wall, "chunks": chunks, "embedded": embedded, **stats, **res}

    def ingest(self) -> None:
        corpora = self.corpora()
        a = self.args
        self.server.set(embed_delay=a.embed_delay, embed_request_delay=a.embed_request_delay)
        peers = list(PEERS) if self.peers_python() else []
        reps = a.reps or (1 if a.quick else 3)
        r = self.results
        r.data["ingest"] = {}
        if a.no_peers:
            r.add("ingest", "peers (LlamaIndex, LangChain)", "left out (--no-peers)")
        elif not peers:
            r.add(
                "ingest",
                "peers (LlamaIndex, LangChain)",
                f"not installed at {a.peers_python}: `make bench-peers`",
                f">= {PEER_SPEEDUP:g}x faster than LlamaIndex",
                False,
            )
        for name, paths, target in corpora:
            # Peers read markdown only; the PDFs are ragged's alone, as in the table.
            pdf = name.startswith("pdf")
            tools = ["ragged"] + ([AGAINST] if self.against else []) + (peers if not pdf else [])
            # The PDF row swung 1.90-2.53x between runs of 3 of the same code, around its
            # target; its runs are short (~1.5 s), so it gets more of them by default.
            n = reps if a.reps or a.quick or name != "pdf" else PDF_REPS
            log(f"ingest {name}: {', '.join(map(str, paths))}; {n} interleaved runs of {tools}")
            runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
            for rep in range(n):
                for i in range(len(tools)):
                    tool = tools[(rep + i) % len(tools)]
                    where = self.tmp / f"ingest-{tool}"
                    ocr = name != "pdf"
                    runs[tool].append(self.ingest_once(tool, paths, where, ocr=ocr))
            self.report_ingest(name, target, runs)

    def report_ingest(
        self, name: str, target: float | None, runs: dict[str, list[dict[str, Any]]]
    ) -> None:
        r = self.results
        par = self.args.num_parallel
        mine = runs["ragged"]
        wall = median([x["wall"] for x in mine])
        union = median([x["busy_union"] for x in mine])
        ratio = median([x["wall"] / x["busy_union"] if x["busy_union"] else math.inf for x in mine])
        last = mine[-1]
        r.data["ingest"][name] = runs
        r.add(
            "ingest",
            f"{name}: corpus",
            f"{last['files']} files (+{last['failed']} unreadable), {last['chunks']} chunks",
        )
        r.add(
            "ingest",
            f"{name}: ragged wall (median of {len(mine)}) / Ollama busy (union)",
            f"{wall:.2f} s / {union:.2f} s",
        )
        r.add(
            "ingest",
            f"{name}: ragged wall / Ollama busy",
            f"{ratio:.2f}x",
            f"<= {target:g}x" if target is not None else "",
            ratio <= target if target is not None else None,
        )
        if last["first_start"] is not None and sys.platform == "linux":
            lead_in = median([x["first_start"] - x["t0"] for x in mine])
            tail = median([x["t1"] - x["last_end"] for x in mine])
            r.add(
                "ingest",
                f"{name}: Ollama idle before first item / after last",
                f"{lead_in:.2f} / {tail:.2f} s",
            )
        r.add(
            "ingest",
            f"{name}: Ollama slot utilisation (busy sum / {par} slots x wall)",
            f"{median([x['busy_sum'] / (par * x['wall']) for x in mine]):.0%}",
        )
        if any(x["embedded"] != x["embedded_inputs"] for x in mine):
            r.add("ingest", f"{name}: embedded vs stand-in inputs", "differ", "equal", False)
        if runs.get(AGAINST):
            self.report_against(name, runs["ragged"], runs[AGAINST])
        for peer in PEERS:
            theirs = runs.get(peer)
            if not theirs:
                continue
            their_wall = median([x["wall"] for x in theirs])
            their_ratio = median([x["wall"] / x["busy_union"] for x in theirs if x["busy_union"]])
            label = {"llamaindex": "LlamaIndex use_async", "langchain": "LangChain"}[peer]
            r.add(
                "ingest",
                f"{name}: {label} wall (median, {theirs[-1]['chunks']} chunks), wall / busy",
                f"{their_wall:.2f} s, {their_ratio:.2f}x",
            )
            speedup = their_wall / wall
            r.add(
                "ingest",
                f"{name}: ragged faster than {label} by",
                f"{speedup:.2f}x",
                f">= {PEER_SPEEDUP:g}x" if peer == "llamaindex" else "",
                speedup >= PEER_SPEEDUP if peer == "llamaindex" else None,
            )

    def report_against(
        self, name: str, mine: list[dict[str, Any]], theirs: list[dict[str, Any]]
    ) -> None:
        """This checkout beside --against's revision: the same runs, interleaved."""
        rev = self.args.against

        def summary(runs: list[dict[str, Any]]) -> str:
            parts = [f"{median([x['wall'] for x in runs]):.2f} s"]
            # Runs that sent Ollama nothing (every file unreadable) have no busy time.
            busy = [x for x in runs if x["busy_union"] and x["first_start"] is not None]
            if busy:
                parts.append(
                    f"wall / busy {median([x['wall'] / x['busy_union'] for x in busy]):.2f}x"
                )
                parts.append(
                    f"idle before first {median([x['first_start'] - x['t0'] for x in busy]):.2f} s"
                    f" / after last {median([x['t1'] - x['last_end'] for x in busy]):.2f} s"
                )
            parts.append(f"CPU {median([x['process_cpu_s'] for x in runs]):.2f} s")
            return ", ".join(parts)

        r = self.results
        r.add("ingest", f"{name}: this checkout (medians)", summary(mine))
        r.add("ingest", f"{name}: ragged at {rev} (medians)", summary(theirs))
        walls = median([x["wall"] for x in mine]) / median([x["wall"] for x in theirs])
        r.add("ingest", f"{name}: this checkout's wall / {rev}'s", f"{walls:.2f}x")

    # -- unchanged re-ingest -------------------------------------------------------------

    def reingest_paths(self) -> list[Path]:
        want = self.args.reingest_files
        markdown = self.args.corpus / "markdown"
        extras = self.tmp / "reingest-extra"
        if markdown.is_dir():
            count = sum(1 for p in markdown.rglob("*") if p.is_file())
            if count <= want:
                synth.write_small_files(extras, want - count, self.vocab)
                self.corpus_in_reingest = True
                return [markdown, extras]
        synth.write_small_files(extras, want, self.vocab)
        return [extras]

    def reingest(self) -> None:
        paths = self.reingest_paths()
        home = self.tmp / "reingest-home"
        env = self.env(home)
        self.server.set(embed_delay=0.0, embed_request_delay=0.0)
        reps = self.args.reps or (3 if self.args.quick else 5)
        log(f"re-ingest: first ingest of {', '.join(map(str, paths))}")
        res = worker(
            {"op": "ingest", "paths": [str(p) for p in paths], "repeat_unchanged": reps}, env
        )
        in_process = median(res["unchanged_s"])
        log(f"re-ingest: {reps} CLI runs, interleaved with `ragged --version`")
        cli: list[float] = []
        version: list[float] = []
        command = [RAGGED, "ingest", *map(str, paths), "--quiet"]
        for _ in range(reps):
            version.append(run([RAGGED, "--version"], env, capture=False).seconds)
            done = run(command, env)
            if done.returncode != 0:
                raise RuntimeError(f"ragged ingest failed:\n{done.stderr[-2000:]}")
            cli.append(done.seconds)
        # A search reads Chroma, which moves its files; the next unchanged ingest must still
        # trust the store unopened (it opened chromadb to compare counts before 0.3).
        after_search: list[float] = []
        for _ in range(reps):
            searched = run([RAGGED, "search", "how to install"], env)
            if searched.returncode != 0:
                raise RuntimeError(f"ragged search failed:\n{searched.stderr[-2000:]}")
            done = run(command, env)
            if done.returncode != 0:
                raise RuntimeError(f"ragged ingest failed:\n{done.stderr[-2000:]}")
            after_search.append(done.seconds)
        heavy = heavy_imports(command[1:], HEAVY, env)
        beyond = median(cli) - median(version)
        beyond_search = median(after_search) - median(version)
        r = self.results
        r.data["reingest"] = {
            "files": res["files"],
            "chunks": res["chunks"],
            "in_process_s": res["unchanged_s"],
            "cli_s": cli,
            "cli_after_search_s": after_search,
            "version_s": version,
            "open_s": res["open_s"],
            "heavy_imports": heavy,
        }
        r.add("re-ingest", "folder", f"{res['files']} files, {res['chunks']} chunks, unchanged")
        r.add(
            "re-ingest",
            "in-process ingest() (median)",
            f"{in_process:.2f} s",
            f"< {REINGEST_S:g} s",
            in_process < REINGEST_S,
        )
        r.add(
            "re-ingest",
            "CLI wall - `ragged --version` wall (medians)",
            f"{median(cli):.2f} - {median(version):.2f} = {beyond:.2f} s",
            f"< {REINGEST_S:g} s",
            beyond < REINGEST_S,
        )
        r.add(
            "re-ingest",
            "the same, right after a `ragged search`",
            f"{median(after_search):.2f} - {median(version):.2f} = {beyond_search:.2f} s",
            f"< {REINGEST_S:g} s",
            beyond_search < REINGEST_S,
        )
        r.add(
            "re-ingest",
            "heavy modules imported by the CLI's unchanged run",
            heavy or "none",
            "none of " + "/".join(HEAVY),
            heavy == "",
        )

    # -- cold commands: ragged search / ask against the floor script -------------------

    def cold(self) -> None:
        home = self.tmp / "reingest-home"
        if not home.exists():
            # Without the re-ingest section's store, make a small one to ask against.
            self.server.set(embed_delay=0.0, embed_request_delay=0.0)
            notes = self.tmp / "ask-notes"
            synth.write_small_files(notes, 200, self.vocab, seed=3)
            worker({"op": "ingest", "paths": [str(notes)]}, self.env(home))
            questions = synth.questions_from(notes, 8)
        elif self.corpus_in_reingest:
            questions = list(synth.CORPUS_QUESTIONS)
        else:
            questions = synth.questions_from(self.tmp / "reingest-extra", 8)
        a = self.args
        self.server.set(
            embed_delay=a.embed_delay,
            embed_request_delay=a.embed_request_delay,
            first_token_delay=a.first_token_delay,
            token_delay=a.token_delay,
        )
        # The model's own time before the first token reaches the client: the question's
        # embedding (one request, one input), the prompt (first_token_delay), the first token.
        model = a.embed_request_delay + a.embed_delay + a.first_token_delay + a.token_delay
        reps = a.reps or (5 if a.quick else 15)
        env = self.env(home)
        floor = [sys.executable, str(ROOT / "bench" / "floor.py")]
        chroma = str(home / "chroma")
        commands: dict[str, Callable[[str], list[str]]] = {
            "floor search": lambda q: [*floor, "search", chroma, "default", q],
            "ragged search": lambda q: [RAGGED, "search", q],
            "floor ask": lambda q: [*floor, "ask", chroma, "default", q, CHAT_MODEL],
            "ragged ask": lambda q: [RAGGED, "ask", q],
        }
        names = list(commands)
        for name in names:  # one untimed pass: the page cache, .pyc files
            run(commands[name](questions[0]), env, capture=False)
        times: dict[str, list[float]] = {name: [] for name in names}
        log(f"cold commands: {reps} interleaved runs of {', '.join(names)}")
        for rep in range(reps):
            question = questions[rep % len(questions)]
            for i in range(len(names)):
                name = names[(rep + i) % len(names)]
                cmd = commands[name](question)
                if name.endswith("search"):
                    done = run(cmd, env)
                    if done.returncode != 0:
                        raise RuntimeError(f"{name} failed:\n{done.stderr[-2000:]}")
                    times[name].append(done.seconds)
                else:
                    times[name].append(time_to_first_byte(cmd, env)[0])
        med = {name: median(t) for name, t in times.items()}
        r = self.results
        r.data["cold"] = {"model_ttft_s": model, "times_s": times}
        search_ratio = med["ragged search"] / med["floor search"]
        r.add(
            "cold",
            "`ragged search` / floor script (wall, medians)",
            f"{ms(med['ragged search'])} / {ms(med['floor search'])} = {search_ratio:.2f}x",
            f"<= {SEARCH_FLOOR_RATIO:g}x",
            search_ratio <= SEARCH_FLOOR_RATIO,
        )
        r.add("cold", "model's own time to first token (embed + prompt + 1 token)", ms(model))
        mine, theirs = med["ragged ask"] - model, med["floor ask"] - model
        ask_ratio = mine / theirs if theirs > 0 else math.inf
        r.add(
            "cold",
            "`ragged ask` first byte beyond the model / floor's (medians)",
            f"{ms(mine)} / {ms(theirs)} = {ask_ratio:.2f}x",
            f"<= {ASK_FLOOR_RATIO:g}x",
            ask_ratio <= ASK_FLOOR_RATIO,
        )

    # -- scale: peak RSS of ingests, then search ----------------------------------------

    def scale(self) -> None:
        sizes: list[int] = self.args.sizes
        per_file = None
        rss: list[tuple[int, float]] = []
        r = self.results
        r.data["scale"] = []
        n_queries = self.args.queries or (20 if self.args.quick else 60)
        queries = synth.queries(self.vocab, n_queries + 3)
        for size in sizes:
            where = self.tmp / f"scale-{size}"
            docs, home = where / "docs", where / "home"
            if per_file is None:
                per_file = synth.chunks_per_file(self.vocab)
            files = synth.write_synthetic(docs, size, self.vocab, seed=size, per_file=per_file)
            self.server.set(embed_delay=0.0, embed_request_delay=0.0)
            self.server.reset()
            log(f"scale {size}: `ragged ingest` of {files} synthetic files (instant Ollama)")
            done = run([RAGGED, "ingest", str(docs), "--quiet", "--json"], self.env(home))
            if done.returncode != 0:
                raise RuntimeError(f"ragged ingest failed:\n{done.stderr[-2000:]}")
            report = json.loads(done.stdout)
            chunks = int(report["chunks"])
            rss.append((chunks, done.peak_rss_mb))
            log(f"scale {size}: {chunks} chunks in {done.seconds:.0f} s; {len(queries)} searches")
            res = worker({"op": "search", "queries": queries}, self.env(home))
            # One file edited, then ingested: the old version's chunks are deleted, so the run
            # purges their text from the files, which costs in proportion to the store.
            edited = min(docs.rglob("*.md"))
            edited.write_text(edited.read_text() + "\n\nOne more paragraph, added later.\n")
            again = run([RAGGED, "ingest", str(docs), "--quiet", "--json"], self.env(home))
            if again.returncode != 0 or not json.loads(again.stdout)["purged"]:
                raise RuntimeError(
                    f"the re-ingest of an edited file did not purge:\n{again.stderr}"
                )
            beyond = [t - e for t, e in zip(res["total_s"], res["embed_s"], strict=True)]
            p50, p95 = percentile(beyond, 50), percentile(beyond, 95)
            r.data["scale"].append(
                {
                    "target_chunks": size,
                    "chunks": chunks,
                    "files": files,
                    "ingest_cli_s": done.seconds,
                    "ingest_peak_rss_mb": done.peak_rss_mb,
                    "search_beyond_embed_s": beyond,
                    "search_cold_s": res["cold_s"],
                    "embed_call_s": res["embed_s"],
                    "search_peak_rss_mb": res["peak_rss_mb"],
                    "edited_ingest_cli_s": again.seconds,
                }
            )
            label = f"{size // 1000}k" if size >= 1000 else str(size)
            biggest = size == max(sizes) and size >= 100_000
            r.add(
                "scale",
                f"ingest {label} chunks (CLI, instant Ollama): chunks/s",
                f"{chunks / done.seconds:.0f}",
            )
            r.add(
                "scale",
                f"ingest {label} chunks: peak RSS",
                f"{done.peak_rss_mb:.0f} MB ({chunks} chunks)",
                f"<= {PEAK_RSS_MB:g} MB at 100k" if biggest else "",
                done.peak_rss_mb <= PEAK_RSS_MB if biggest else None,
            )
            r.add(
                "scale",
                f"search {label} chunks: p50 / p95 beyond embedding",
                f"{ms(p50)} / {ms(p95)}",
                f"p95 <= {SEARCH_P95_MS:g} ms at 100k" if biggest else "",
                p95 * 1000 <= SEARCH_P95_MS if biggest else None,
            )
            r.add(
                "scale",
                f"search {label} chunks: first query in a process",
                ms(res["cold_s"][0]) if res["cold_s"] else "-",
            )
            r.add(
                "scale",
                f"ingest {label} chunks after one file was edited (CLI, purge included)",
                f"{again.seconds:.2f} s",
            )
            shutil.rmtree(where, ignore_errors=True)  # 100k chunks take ~2 GB on disk
        if len(rss) >= 2:
            (n0, m0), (n1, m1) = rss[0], rss[-1]
            exponent = math.log(m1 / m0) / math.log(n1 / n0) if n1 != n0 else 0.0
            r.add(
                "scale",
                f"RSS growth: exponent b in RSS ~ chunks^b ({n0} -> {n1})",
                f"{exponent:.2f}",
                "< 1 (sub-linear)",
                exponent < 1,
            )
            (na, ma), (nb, mb) = rss[-2], rss[-1]
            r.add(
                "scale",
                "marginal RSS per 1k chunks (last two sizes)",
                f"{(mb - ma) / max(1, nb - na) * 1000:.1f} MB",
            )


def render(results: Results, header: Sequence[str], markdown: bool) -> None:
    if markdown:
        print("\n".join(header))
        print()
        print("| section | measure | result | target | status |")
        print("| --- | --- | --- | --- | --- |")
        for row in results.rows:
            print(f"| {row.section} | {row.measure} | {row.value} | {row.target} | {row.status} |")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ragged performance (issues 7, 15)", caption="\n".join(header))
    table.add_column("section", no_wrap=True)
    table.add_column("measure", min_width=40)
    table.add_column("result", min_width=18)
    table.add_column("target", min_width=12)
    table.add_column("status", no_wrap=True)
    style = {"PASS": "green", "MISS": "bold red", "info": "dim"}
    last = None
    for row in results.rows:
        if last is not None and row.section != last:
            table.add_section()
        table.add_row(
            row.section if row.section != last else "",
            row.measure,
            row.value,
            row.target,
            f"[{style[row.status]}]{row.status}[/]",
        )
        last = row.section
    Console(width=max(150, shutil.get_terminal_size().columns)).print(table)


def profile(args: argparse.Namespace, tmp: Path, server: StandInProcess, out: Path) -> None:
    """pyinstrument profiles of the ingests and a search, and the import times of --help."""
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, tmp, server)
    size = max(args.sizes)

    def corpus_ingest() -> None:
        server.set(embed_delay=args.embed_delay, embed_request_delay=args.embed_request_delay)
        worker(
            {
                "op": "ingest",
                "paths": [str(p) for _, paths, _ in bench.corpora() for p in paths],
                "profile": str(out / "ingest-corpus.txt"),
            },
            bench.env(tmp / "profile-corpus"),
        )

    def scale_ingest_and_search() -> None:
        docs, home = tmp / "profile-scale" / "docs", tmp / "profile-scale" / "home"
        synth.write_synthetic(docs, size, bench.vocab, seed=size)
        server.set(embed_delay=0.0, embed_request_delay=0.0)
        worker(
            {"op": "ingest", "paths": [str(docs)], "profile": str(out / f"ingest-{size}.txt")},
            bench.env(home),
        )
        queries = synth.queries(bench.vocab, 43)
        worker(
            {"op": "search", "queries": queries, "profile": str(out / f"search-{size}.txt")},
            bench.env(home),
        )

    def import_times() -> None:
        done = run([sys.executable, "-X", "importtime", RAGGED, "--help"], bench.env(tmp))
        rows = []
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit():
                rows.append((int(parts[1]), parts[2].rstrip()))
        rows.sort(reverse=True)
        (out / "importtime-help.txt").write_text(
            "cumulative us | module\n"
            + "\n".join(f"{us:>12} | {mod}" for us, mod in rows[:40])
            + "\n"
        )

    jobs: list[tuple[str, Callable[[], None]]] = [("import times of ragged --help", import_times)]
    if "ingest" in args.sections:
        paths = ", ".join(str(p) for _, paths, _ in bench.corpora() for p in paths)
        jobs.append(
            (f"ingest of {paths} at {args.embed_delay * 1000:g} ms per item", corpus_ingest)
        )
    if "scale" in args.sections:
        jobs.append((f"ingest and search at {size} chunks", scale_ingest_and_search))
    for name, job in jobs:
        log(f"profile: {name}")
        job()
    for path in sorted(out.glob("*.txt")):
        print(f"\n==== {path} ====")
        print("\n".join(path.read_text().splitlines()[:70]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="Smaller sizes and fewer repetitions.")
    p.add_argument(
        "--embed-delay",
        type=float,
        default=0.004,
        help="Stand-in seconds per embedded input (default 0.004).",
    )
    p.add_argument(
        "--embed-request-delay",
        type=float,
        default=0.02,
        help="Stand-in seconds per embedding request, whatever its size (default 0.02).",
    )
    p.add_argument(
        "--token-delay",
        type=float,
        default=0.02,
        help="Stand-in seconds per generated token (default 0.02: 50 tok/s).",
    )
    p.add_argument(
        "--first-token-delay",
        type=float,
        default=0.3,
        help="Stand-in seconds before the first token (default 0.3).",
    )
    p.add_argument(
        "--sizes",
        help="Chunk counts for RSS and search (default 1000,10000,100000; quick 500,2000).",
    )
    p.add_argument(
        "--json", action="store_true", help="Print the results as JSON instead of the table."
    )
    p.add_argument(
        "--markdown", action="store_true", help="Print the table as markdown (for docs)."
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="ragged's embed_concurrency, and the stand-in's slots (default 4).",
    )
    p.add_argument(
        "--num-parallel",
        type=int,
        help="The stand-in's num_parallel, Ollama's OLLAMA_NUM_PARALLEL (default: --concurrency).",
    )
    p.add_argument("--embed-batch", type=int, help="ragged's embed_batch (default: ragged's).")
    p.add_argument(
        "--peers-python",
        type=Path,
        default=PEERS_PYTHON,
        help="Python of the peers' venv (`make bench-peers` makes .venv-peers).",
    )
    p.add_argument("--no-peers", action="store_true", help="Leave LlamaIndex and LangChain out.")
    p.add_argument(
        "--against",
        metavar="REV",
        help="Also ingest with ragged at git revision REV, interleaved with this checkout's "
        "runs, to measure a change side by side in one run.",
    )
    p.add_argument(
        "--corpus", type=Path, default=synth.SHARED_CORPUS, help="Real documents to ingest."
    )
    p.add_argument(
        "--reingest-files", type=int, default=REINGEST_FILES, help="Files in the unchanged folder."
    )
    p.add_argument(
        "--reps",
        type=int,
        help="Repetitions of each timed command (default: 25 start-up; 3 each ingest, 7 for "
        "the PDFs; 5 re-ingest; 15 cold commands; fewer with --quick).",
    )
    p.add_argument("--queries", type=int, help="Timed searches per size (default 60; quick 20).")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"Which to run (default {','.join(SECTIONS)}).",
    )
    p.add_argument(
        "--profile", type=Path, metavar="DIR", help="Write pyinstrument profiles to DIR instead."
    )
    args = p.parse_args(argv)
    default_sizes = "500,2000" if args.quick else "1000,10000,100000"
    args.sizes = [int(s) for s in (args.sizes or default_sizes).split(",") if s.strip()]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    # Ollama's parallel slots default to ragged's requests in flight, so that "Ollama busy"
    # means the same server capacity ragged was configured for.
    args.num_parallel = args.num_parallel or args.concurrency
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def export_revision(rev: str, dest: Path) -> Path:
    """Revision `rev` of this repository's files in `dest`, ragged's bytecode compiled.

    `git archive`, not a worktree: nothing is left registered in the repository. Its
    bench/worker.py puts its own tree first on sys.path, so it runs that revision's ragged
    with this checkout's installed dependencies.
    """
    import compileall

    dest.mkdir(parents=True)
    tar = dest.with_suffix(".tar")
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--output", str(tar), rev],
            capture_output=True,
            text=True,
        )
    except OSError as exc:  # no git on this machine
        raise SystemExit(f"--against {rev}: cannot run git: {exc}") from exc
    if done.returncode != 0:
        raise SystemExit(f"--against {rev}: git archive failed: {done.stderr.strip()}")
    shutil.unpack_archive(tar, dest)
    tar.unlink()
    compileall.compile_dir(dest / "ragged", quiet=1)
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    # ragged's bytecode, as an installed package has it (pip compiles at install time). An
    # editable checkout under PYTHONDONTWRITEBYTECODE (some CI and sandboxes set it) would
    # otherwise compile every module of ragged in every timed command: --help read 1.50x
    # `import typer` that way against 1.36x with bytecode, on the same machine.
    import compileall

    compileall.compile_dir(ROOT / "ragged", quiet=1)
    info = machine()
    with (
        tempfile.TemporaryDirectory(prefix="ragged-bench-") as tmp_name,
        StandInProcess(num_parallel=args.num_parallel) as server,
    ):
        tmp = Path(tmp_name)
        if args.profile:
            profile(args, tmp, server, args.profile)
            return 0
        bench = Bench(args, tmp, server)
        for section in SECTIONS:
            if section in args.sections:
                getattr(bench, section)()
    results = bench.results
    took = time.perf_counter() - started
    info["load_1min_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    command = "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        f"command: {command.strip()}  ({took:.0f} s)",
        f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
        f"{info['os']}, Python {info['python']}, load (1 min) {info['load_1min_at_start']:.2f} at "
        f"start, {info['load_1min_at_end']:.2f} at end",
        f"stand-in: {args.embed_request_delay * 1000:g} ms per embed request + "
        f"{args.embed_delay * 1000:g} ms per input, {args.num_parallel} parallel; "
        f"ragged: {args.concurrency} embedding requests in flight; "
        f"first token {args.first_token_delay * 1000:g} ms, "
        f"{args.token_delay * 1000:g} ms per token",
        f"chromadb {info['chromadb']}, ollama {info['ollama']}, tiktoken {info['tiktoken']}, "
        f"typer {info['typer']}",
    ]
    if args.json:
        payload = {
            "command": command,
            "seconds": took,
            "machine": info,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "rows": [asdict(r) for r in results.rows],
            "data": results.data,
        }
        print(json.dumps(payload, indent=2))
    else:
        render(results, header, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
