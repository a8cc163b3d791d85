"""The vector store: Chroma, embedded under the data dir or a Chroma server. Only module importing chromadb."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ragged.errors import EmbeddingMismatch, StoreError

if TYPE_CHECKING:
    from ragged.config import Settings

# Chroma phones home unless told not to; a local-first tool must not. The variable covers
# code paths that build their own chromadb Settings.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

EMBED_MODEL_KEY = "ragged:embed_model"
EMBED_DIM_KEY = "ragged:embed_dim"
WRITE_BATCH = 1000  # well under Chroma's max batch size, and bounded memory per request


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    text: str
    score: float  # cosine similarity for dense hits; fused or BM25-based for others
    path: str  # absolute path of the source file
    rel_path: str  # path relative to the folder it was ingested from
    page: int | None
    heading: str
    chunk_index: int

    @property
    def location(self) -> str:
        if self.page:
            return f"page {self.page}"
        return self.heading


def chunk_metadata(
    path: str, rel_path: str, page: int | None, heading: str, index: int, content_hash: str
) -> dict[str, Any]:
    """Chroma metadata for a chunk; Chroma rejects None values, so absent fields are left out."""
    meta: dict[str, Any] = {
        "path": path,
        "rel_path": rel_path,
        "heading": heading,
        "chunk_index": index,
        "content_hash": content_hash,
    }
    if page is not None:
        meta["page"] = page
    return meta


def hit_from(id_: str, text: str, meta: dict[str, Any], score: float) -> Hit:
    return Hit(
        id=id_,
        text=text,
        score=score,
        path=str(meta.get("path", "")),
        rel_path=str(meta.get("rel_path", "")),
        page=int(meta["page"]) if meta.get("page") is not None else None,
        heading=str(meta.get("heading", "")),
        chunk_index=int(meta.get("chunk_index", 0)),
    )


class Store:
    """One Chroma collection, with the embedding model it was built with recorded on it."""

    def __init__(self, client: Any, name: str, where: str) -> None:
        self._client = client
        self.name = name
        self.where = where  # a path or URL, for messages
        self._collection: Any = None

    def _get(self) -> Any | None:
        if self._collection is None:
            try:
                self._collection = self._client.get_collection(self.name, embedding_function=None)
            except Exception as exc:  # Chroma raises several types for "no such collection"
                if "does not exist" in str(exc) or "not found" in str(exc).lower():
                    return None
                raise StoreError(f"Chroma at {self.where}: {exc}") from exc
        return self._collection

    @property
    def embedding(self) -> tuple[str, int] | None:
        """(model, dimension) the collection was built with, or None if it does not exist yet."""
        col = self._get()
        if col is None:
            return None
        meta = col.metadata or {}
        if EMBED_MODEL_KEY not in meta:
            return None
        return str(meta[EMBED_MODEL_KEY]), int(meta[EMBED_DIM_KEY])

    def check_model(self, model: str, dim: int | None = None) -> None:
        """Refuse to mix vectors of two models: the similarities would be garbage."""
        from ragged.llm import full_name

        recorded = self.embedding
        if recorded is None:
            return
        rec_model, rec_dim = recorded
        if full_name(rec_model) != full_name(model) or (dim is not None and dim != rec_dim):
            raise EmbeddingMismatch(
                f"collection '{self.name}' was built with embedding model {rec_model} "
                f"({rec_dim} dimensions), not {model}" + (f" ({dim} dimensions)" if dim else ""),
                hint=f"use --embed-model {rec_model}, or another --collection, "
                f"or `ragged reset --collection {self.name}` and ingest again",
            )

    def ensure(self, model: str, dim: int) -> None:
        """Create the collection for this model, or check that it was made with it."""
        self.check_model(model, dim)
        if self._get() is None:
            try:
                self._collection = self._client.create_collection(
                    self.name,
                    metadata={"hnsw:space": "cosine", EMBED_MODEL_KEY: model, EMBED_DIM_KEY: dim},
                    embedding_function=None,
                )
            except Exception as exc:
                raise StoreError(
                    f"cannot create collection '{self.name}' at {self.where}: {exc}"
                ) from exc

    def add(
        self,
        ids: Sequence[str],
        vectors: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Upsert, so re-adding after an interrupted run never makes duplicates."""
        col = self._require()
        for start in range(0, len(ids), WRITE_BATCH):
            end = start + WRITE_BATCH
            self._guard(
                lambda s=start, e=end: col.upsert(
                    ids=list(ids[s:e]),
                    embeddings=[list(v) for v in vectors[s:e]],
                    documents=list(texts[s:e]),
                    metadatas=list(metadatas[s:e]),
                )
            )

    def query(
        self, vector: Sequence[float], k: int, where: dict[str, Any] | None = None
    ) -> list[Hit]:
        col = self._get()
        if col is None:
            return []
        n = min(k, self.count())
        if n == 0:
            return []
        res = self._guard(
            lambda: col.query(
                query_embeddings=[list(vector)],
                n_results=n,
                where=where,
                include=["documents", "metadatas", "distances"],
            )
        )
        return [
            # cosine distance is 1 - similarity
            hit_from(id_, doc or "", dict(meta or {}), 1.0 - float(dist))
            for id_, doc, meta, dist in zip(
                res["ids"][0],
                res["documents"][0],
                res["metadatas"][0],
                res["distances"][0],
                strict=True,
            )
        ]

    def vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        col = self._get()
        if col is None or not ids:
            return {}
        out: dict[str, list[float]] = {}
        for start in range(0, len(ids), WRITE_BATCH):
            res = self._guard(
                lambda s=start: col.get(ids=list(ids[s : s + WRITE_BATCH]), include=["embeddings"])
            )
            for id_, vec in zip(res["ids"], res["embeddings"], strict=True):
                out[id_] = [float(x) for x in vec]
        return out

    def iter_all(
        self, batch: int = WRITE_BATCH
    ) -> Iterator[tuple[str, list[float], str, dict[str, Any]]]:
        """Every (id, vector, text, metadata), in pages: for copying a collection elsewhere."""
        col = self._get()
        if col is None:
            return
        offset = 0
        while True:
            res = self._guard(
                lambda o=offset: col.get(
                    limit=batch, offset=o, include=["embeddings", "documents", "metadatas"]
                )
            )
            if not res["ids"]:
                return
            for id_, vec, doc, meta in zip(
                res["ids"], res["embeddings"], res["documents"], res["metadatas"], strict=True
            ):
                yield id_, [float(x) for x in vec], doc or "", dict(meta or {})
            offset += len(res["ids"])

    def ids(self) -> set[str]:
        col = self._get()
        if col is None:
            return set()
        out: set[str] = set()
        offset = 0
        while True:
            res = self._guard(lambda o=offset: col.get(limit=10_000, offset=o, include=[]))
            if not res["ids"]:
                return out
            out.update(res["ids"])
            offset += len(res["ids"])

    def delete(self, ids: Sequence[str]) -> None:
        col = self._get()
        if col is None or not ids:
            return
        for start in range(0, len(ids), WRITE_BATCH):
            self._guard(lambda s=start: col.delete(ids=list(ids[s : s + WRITE_BATCH])))

    def count(self) -> int:
        col = self._get()
        return 0 if col is None else int(self._guard(col.count))

    def drop(self) -> None:
        if self._get() is None:
            return
        self._guard(lambda: self._client.delete_collection(self.name))
        self._collection = None

    def _require(self) -> Any:
        col = self._get()
        if col is None:
            raise StoreError(f"collection '{self.name}' does not exist at {self.where}")
        return col

    def _guard(self, fn: Any) -> Any:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"Chroma at {self.where} failed: {exc}",
                hint="check that the Chroma server is up"
                if self.where.startswith("http")
                else None,
            ) from exc


def list_collections(settings: Settings) -> list[tuple[str, int, str | None]]:
    """(name, chunk count, embedding model) of every collection in the configured Chroma."""
    client = _client(settings)
    out = []
    for col in client.list_collections():
        meta = col.metadata or {}
        out.append((col.name, int(col.count()), meta.get(EMBED_MODEL_KEY)))
    return sorted(out)


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    try:
        if settings.chroma_url:
            parts = urlsplit(
                settings.chroma_url
                if "://" in settings.chroma_url
                else f"http://{settings.chroma_url}"
            )
            headers = (
                {"Authorization": f"Bearer {settings.chroma_token}"}
                if settings.chroma_token
                else None
            )
            return chromadb.HttpClient(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (443 if parts.scheme == "https" else 8000),
                ssl=parts.scheme == "https",
                headers=headers,
                settings=chroma_settings,
                tenant=settings.chroma_tenant,
                database=settings.chroma_database,
            )
        path = Path(settings.home) / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        where = settings.chroma_url or str(Path(settings.home) / "chroma")
        raise StoreError(
            f"cannot open Chroma at {where}: {exc}",
            hint="start the server (`docker compose up -d chromadb`) or unset RAGGED_CHROMA_URL"
            if settings.chroma_url
            else "check that the data dir is writable",
        ) from exc


def store_location(settings: Settings) -> str:
    return settings.chroma_url or str(Path(settings.home) / "chroma")


def open_store(settings: Settings, collection: str | None = None) -> Store:
    """The one factory for the vector store: embedded by default, a server when a URL is set."""
    return Store(_client(settings), collection or settings.collection, store_location(settings))


def describe(settings: Settings) -> dict[str, Any]:
    """What `ragged doctor` reports about the store: mode, location, version, health.

    Embedded: `writable` and `size_bytes` of the directory. Server: `heartbeat_ns` and the
    server's `version`. Opening the client is itself part of the check, so a store that cannot
    be opened raises StoreError with a hint, as everywhere else.
    """
    import chromadb

    client = _client(settings)
    where = store_location(settings)
    if settings.chroma_url:
        try:
            heartbeat = int(client.heartbeat())
            version = str(client.get_version())
        except Exception as exc:
            raise StoreError(
                f"Chroma server at {where} did not answer: {exc}",
                hint="start the server (`docker compose up -d chromadb`) or unset RAGGED_CHROMA_URL",
            ) from exc
        return {"mode": "server", "location": where, "version": version, "heartbeat_ns": heartbeat}
    path = Path(where)
    return {
        "mode": "embedded",
        "location": where,
        "version": str(chromadb.__version__),
        "writable": _writable(path),
        "size_bytes": _tree_size(path),
    }


def _writable(path: Path) -> bool:
    """Try it: os.access lies about read-only mounts and some network filesystems."""
    import tempfile

    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ragged-write-test-"):
            return True
    except OSError:
        return False


def _tree_size(path: Path) -> int:
    """Bytes of every file under `path`; files vanishing meanwhile count as nothing."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                continue
    return total
