"""Which files an ingest considers: ignore rules, hidden files, size limits, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragged.ingest.walk import walk


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def names(root: Path, **kw: object) -> list[str]:
    return sorted(c.rel_path for c in walk([root], **kw).candidates)  # type: ignore[arg-type]


def test_supported_files_only_and_hidden_skipped(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "d",
        {
            "a.md": "x",
            "b.txt": "x",
            "c.gif": "x",
            ".hidden.md": "x",
            ".git/config.md": "x",
            "sub/d.html": "x",
            "sub/e.PDF": "x",
            "sub/f.rst": "x",
            "g.markdown": "x",
            "h.htm": "x",
        },
    )
    assert names(root) == [
        "a.md",
        "b.txt",
        "g.markdown",
        "h.htm",
        "sub/d.html",
        "sub/e.PDF",
        "sub/f.rst",
    ]


@pytest.mark.parametrize("ocr", [True, False])
def test_images_are_walked_only_with_ocr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ocr: bool
) -> None:
    monkeypatch.setattr("ragged.ingest.ocr.available", lambda: ocr)
    root = tree(tmp_path / "d", {"scan.png": "x", "photo.JPG": "x", "notes.md": "x"})
    assert names(root) == (["notes.md", "photo.JPG", "scan.png"] if ocr else ["notes.md"])
    # Named on the command line, an image is always tried, so the loader can say what it needs.
    assert [c.path.name for c in walk([root / "scan.png"]).candidates] == ["scan.png"]


def test_gitignore_and_raggedignore(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "d",
        {
            ".gitignore": "build/\n*.log.md\n!keep.log.md\n",
            "build/out.md": "x",
            "notes.log.md": "x",
            "keep.log.md": "x",
            "a.md": "x",
            "sub/.raggedignore": "secret*.md\n",
            "sub/secret-plans.md": "x",
            "sub/public.md": "x",
            "other/secret-too.md": "x",
        },
    )
    assert names(root) == ["a.md", "keep.log.md", "other/secret-too.md", "sub/public.md"]


def test_include_exclude_globs(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "d", {"a.md": "x", "b.txt": "x", "drafts/c.md": "x", "drafts/d.txt": "x"}
    )
    assert names(root, include=["*.md"]) == ["a.md", "drafts/c.md"]
    assert names(root, exclude=["drafts/"]) == ["a.md", "b.txt"]


def test_size_limit_is_reported(tmp_path: Path) -> None:
    root = tree(tmp_path / "d", {"small.md": "x", "big.md": "y" * 2000})
    found = walk([root], max_bytes=1000)
    assert [c.rel_path for c in found.candidates] == ["small.md"]
    assert len(found.skipped) == 1 and "limit" in found.skipped[0].reason


def test_missing_root_and_unsupported_file_argument(tmp_path: Path) -> None:
    (tmp_path / "pic.gif").write_bytes(b"x")
    found = walk([tmp_path / "missing", tmp_path / "pic.gif"])
    reasons = {Path(s.path).name: (s.reason, s.failed) for s in found.skipped}
    assert reasons["missing"] == ("no such file or directory", True)
    assert reasons["pic.gif"][0].startswith("unsupported file type")


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_symlinks_followed_inside_root_only_and_loops_stopped(tmp_path: Path) -> None:
    outside = tree(tmp_path / "outside", {"secret.md": "x"})
    root = tree(tmp_path / "d", {"real/a.md": "x", ".stash/b.md": "x"})
    (root / "link-in").symlink_to(root / "real")  # an alias: adds nothing twice
    (root / "shown").symlink_to(root / ".stash")  # inside the root, not walked otherwise
    (root / "link-out").symlink_to(outside)
    (root / "real" / "loop").symlink_to(root)
    (root / "real" / "a-link.md").symlink_to(root / "real" / "a.md")
    found = walk([root])
    rels = sorted(c.rel_path for c in found.candidates)
    assert rels == [".stash/b.md", "real/a.md"]
    reasons = {Path(s.path).name: s.reason for s in found.skipped}
    assert reasons["link-out"] == "symlink points outside the ingest root"
    assert "symlink loop" in reasons.values()
