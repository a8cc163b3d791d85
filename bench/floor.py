"""The floor for `ragged search` and `ragged ask`: a minimal script making the same calls.

What anyone would write with the two official clients and nothing else: embed the question
(with nomic-embed-text's query prefix), ask Chroma for the nearest chunks, print them; for
ask, then stream a chat answer from those chunks. No settings, no catalog, no keyword
search, no checks. `make bench` times it in fresh processes beside the ragged command:

    python bench/floor.py search CHROMA_DIR COLLECTION "question"
    python bench/floor.py ask CHROMA_DIR COLLECTION "question" CHAT_MODEL

OLLAMA_HOST says where Ollama is, as for ragged.
"""

from __future__ import annotations

import os
import sys

EMBED_MODEL = "nomic-embed-text"
TOP_K = 6


def main(argv: list[str]) -> None:
    command, chroma_dir, collection, question = argv[:4]
    import chromadb
    import ollama

    client = ollama.Client(host=os.environ.get("OLLAMA_HOST"))
    vector = client.embed(model=EMBED_MODEL, input=["search_query: " + question]).embeddings[0]
    store = chromadb.PersistentClient(path=chroma_dir).get_collection(collection)
    found = store.query(query_embeddings=[vector], n_results=TOP_K)
    metas = (found["metadatas"] or [[]])[0]
    # ragged keeps a chunk's text in its metadata (TEXT_KEY in ragged/store.py).
    docs = [
        m.get("ragged:text") or d
        for m, d in zip(metas, (found["documents"] or [[]])[0], strict=True)
    ]
    if command == "search":
        for doc, meta in zip(docs, metas, strict=True):
            print(f"{meta.get('path')}\n{(doc or '')[:200]}\n")
        return
    sources = "\n\n".join(
        f"[{n}] {m.get('path')}\n{d}" for n, (d, m) in enumerate(zip(docs, metas, strict=True), 1)
    )
    messages = [
        {"role": "system", "content": "Answer from the numbered sources only; cite them as [n]."},
        {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question}"},
    ]
    for part in client.chat(model=argv[4], messages=messages, stream=True):
        sys.stdout.write(part.message.content or "")
        sys.stdout.flush()
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
