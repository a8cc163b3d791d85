"""Find the files to ingest under the given paths, honouring ignore rules and size limits."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragged.ingest.loaders import SUPPORTED_SUFFIXES, not_regular, readable_suffixes

IGNORE_FILES = (".gitignore", ".raggedignore")
# A path is stored as text (SQLite, Chroma metadata, JSON), which must be valid Unicode. A
# name that is not valid UTF-8 decodes to lone surrogates that no store accepts, and no
# escaping can be both reversible and leave every valid name as it is; so such a file is
# reported (its bad bytes shown as \x escapes) and left for the user to rename.
BAD_NAME = "{} name is not valid UTF-8; rename it to ingest it (e.g. `convmv -f latin1 -t utf-8`)"


@dataclass(frozen=True)
class Candidate:
    path: Path  # absolute, resolved
    root: Path  # the ingest root it was found under (itself for a file argument)
    rel_path: str  # for progress display only: a file is known by `path`
    size: int
    mtime_ns: int
    ctime_ns: int = 0


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    failed: bool = False  # a problem (missing root, unreadable dir) rather than a rule
    missing: Path | None = None  # a path given that does not exist, absolute


@dataclass
class Walk:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # Folders walked completely: what is stored under them but gone now may be pruned.
    complete_roots: list[Path] = field(default_factory=list)
    # Of those, folders in which not one file was found (an unmounted disk looks like this).
    empty_roots: list[Path] = field(default_factory=list)
    # Every supported file seen, kept out by a command-line filter or not: it still exists.
    present: set[str] = field(default_factory=set)
    # Files and folders a persistent rule excludes: (path, is a folder, the rule's file).
    ignored: list[tuple[str, bool, str]] = field(default_factory=list)

    def ignored_by(self, path: str) -> str | None:
        """The ignore file that now excludes `path` (itself or a folder above it), if any."""
        for where, is_dir, rule in self.ignored:
            if path == where or (is_dir and path.startswith(where.rstrip("/") + "/")):
                return rule
        return None


def shown(path: str | Path) -> str:
    """A path as valid Unicode: undecodable bytes as \\x escapes (e.g. r\\xe9sum\\xe9.md)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def undecodable(path: str | Path) -> bool:
    """Whether a path's name had bytes that are not UTF-8 (they decode to lone surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def taken_in_again(path: Path) -> bool:
    """Whether an ingest of the folder that holds `path` takes it in: a regular file of a
    type ragged reads, not hidden, and kept out by no ignore file in that folder (the walk
    reads those of the folder it is given and below, none above)."""
    if path.name.startswith(".") or path.suffix.lower() not in readable_suffixes():
        return False
    try:
        if not path.is_file():
            return False
    except OSError:
        return False
    return _ignored(path, False, _read_ignores(path.parent)) is None


def _spec(lines: Sequence[str]):  # type: ignore[no-untyped-def]
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def walk(
    paths: Sequence[Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    max_bytes: int | None = None,
) -> Walk:
    """Every supported file under `paths`, with each skipped one and why."""
    out = Walk()
    include_spec = _spec(include) if include else None
    exclude_spec = _spec(exclude) if exclude else None
    seen: set[str] = set()
    # Images need the OCR extra: without it a folder's images are passed over, and an image
    # named on the command line fails with the install hint (the loader gives it).
    readable = readable_suffixes()

    def consider(path: Path, root: Path, st: os.stat_result, explicit: bool) -> None:
        name = str(path)
        if path.suffix.lower() not in (SUPPORTED_SUFFIXES if explicit else readable):
            if explicit:
                out.skipped.append(
                    Skipped(
                        shown(path), f"unsupported file type '{shown(path.suffix or path.name)}'"
                    )
                )
            return
        if undecodable(path):
            out.skipped.append(Skipped(shown(path), BAD_NAME.format("file"), failed=True))
            return
        if (why := not_regular(st.st_mode)) is not None:
            out.skipped.append(Skipped(name, why, failed=explicit))
            return
        out.present.add(name)
        rel = _relative(name, path, root)
        if not explicit and include_spec is not None and not include_spec.match_file(rel):
            return
        if exclude_spec is not None and exclude_spec.match_file(rel):
            return
        if max_bytes is not None and st.st_size > max_bytes:
            out.skipped.append(
                Skipped(
                    str(path),
                    f"larger than the {max_bytes / 1e6:g} MB limit ({st.st_size / 1e6:.1f} MB)",
                )
            )
            return
        if name in seen:
            return
        seen.add(name)
        out.candidates.append(
            Candidate(path, root, rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        )

    for given in paths:
        given = Path(given).expanduser()
        try:
            root = given.resolve(strict=True)
            st = root.stat()
        except FileNotFoundError:
            url = _as_url(given)
            if url is not None:
                reason = "a URL; ragged ingests files on this machine: download it first"
                out.skipped.append(Skipped(url, reason, failed=True))
            else:
                out.skipped.append(
                    Skipped(
                        shown(given),
                        "no such file or directory",
                        failed=True,
                        missing=given.resolve(),  # stored paths are resolved too
                    )
                )
            continue
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on old Pythons
            out.skipped.append(
                Skipped(
                    shown(given),
                    f"cannot open: {getattr(exc, 'strerror', None) or exc}",
                    failed=True,
                )
            )
            continue
        if stat.S_ISDIR(st.st_mode) and undecodable(root):
            out.skipped.append(Skipped(shown(root), BAD_NAME.format("folder"), failed=True))
        elif stat.S_ISDIR(st.st_mode):
            before = (len(out.present), len(out.ignored))
            if _walk_dir(root, out, consider):
                out.complete_roots.append(root)
                if (len(out.present), len(out.ignored)) == before:
                    out.empty_roots.append(root)
        else:
            consider(root, root, st, explicit=True)
    return out


def _relative(name: str, path: Path, root: Path) -> str:
    """`path` relative to `root`, with forward slashes (the form ignore patterns match).

    By the string where it can be: a folder's walk asks this of every file, and pathlib's
    relative_to parses the path again each time (a third of a walk of 1,500 files).
    """
    top = str(root)
    if name == top:
        return path.name
    if os.sep == "/" and name.startswith(top) and name[len(top) : len(top) + 1] == "/":
        return name[len(top) + 1 :]
    return path.relative_to(root).as_posix()


def _walk_dir(root: Path, out: Walk, consider) -> bool:  # type: ignore[no-untyped-def]
    """Depth-first walk; returns False when part of the tree could not be read.

    Symlinked folders are walked last, and only when their target lies inside the root and
    was not walked already (by inode): so an alias adds nothing twice and a link to an
    ancestor is reported as a loop instead of recursing forever.
    """
    complete = True
    visited: set[tuple[int, int]] = set()
    links: list[tuple[Path, list[tuple[Path, object]]]] = []
    # Each level carries the ignore specs of its ancestors, with the folder they apply to.
    stack: list[tuple[Path, list[tuple[Path, object]]]] = [(root, [])]
    while stack or links:
        if not stack:
            link, specs = links.pop(0)
            try:
                target = link.resolve(strict=True)
                st = target.stat()
            except (OSError, RuntimeError):  # removed or re-pointed while we walked
                out.skipped.append(Skipped(shown(link), "broken symlink or unreadable entry"))
                continue
            if (st.st_dev, st.st_ino) in visited:
                if target == link.parent or target in link.parents:
                    out.skipped.append(Skipped(shown(link), "symlink loop"))
                continue
            stack.append((target, specs))
        folder, specs = stack.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            out.skipped.append(
                Skipped(shown(folder), f"cannot open folder: {exc.strerror}", failed=True)
            )
            complete = False
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            continue
        visited.add(key)
        specs = specs + _read_ignores(folder)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.skipped.append(
                Skipped(shown(folder), f"cannot list folder: {exc.strerror}", failed=True)
            )
            complete = False
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and folders (.git, .venv, .DS_Store)
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
                is_link = entry.is_symlink()
                real = path.resolve(strict=True) if is_link else path
                est = real.stat()
            except (OSError, RuntimeError):
                out.skipped.append(Skipped(shown(path), "broken symlink or unreadable entry"))
                continue
            if is_link and real != root and root not in real.parents:
                out.skipped.append(Skipped(shown(path), "symlink points outside the ingest root"))
                continue
            rule = _ignored(path, is_dir, specs)
            if rule is not None:
                out.ignored.append((str(real), is_dir, rule))
                continue
            if is_dir and undecodable(path):
                # Everything below it would be unnameable too: one line for the folder.
                out.skipped.append(Skipped(shown(path), BAD_NAME.format("folder"), failed=True))
            elif is_dir and is_link:
                links.append((path, specs))
            elif is_dir:
                subdirs.append(path)
            elif stat.S_ISREG(est.st_mode):
                # A linked file is stored under its real path, so it is never stored twice.
                consider(real, root, est, explicit=False)
            elif path.suffix.lower() in SUPPORTED_SUFFIXES:
                # A FIFO, socket or device named like a document: say why it is left out.
                consider(path, root, est, explicit=False)
        stack.extend((d, specs) for d in reversed(subdirs))
    return complete


def _read_ignores(folder: Path) -> list[tuple[Path, object]]:
    specs = []
    for name in IGNORE_FILES:
        try:
            lines = (folder / name).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        specs.append((folder / name, _spec(lines)))
    return specs


def _ignored(path: Path, is_dir: bool, specs: list[tuple[Path, object]]) -> str | None:
    """The ignore file whose rules exclude `path`, or None."""
    for rules, spec in specs:
        rel = path.relative_to(rules.parent).as_posix() + ("/" if is_dir else "")
        if spec.match_file(rel):  # type: ignore[attr-defined]
            return str(rules)
    return None


def _as_url(given: Path) -> str | None:
    """The URL a path that does not exist was given as, if it was one: a Path keeps one slash
    of `https://` ("https:/host/file.pdf"), which read as a missing file."""
    import re

    match = re.match(r"(?i)(https?|ftp|s3|gs):/+(?=[^/])", str(given))
    return f"{match.group(1)}://{str(given)[match.end() :]}" if match else None
