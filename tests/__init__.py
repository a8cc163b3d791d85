"""ragged test suite (a package, so bench/ can import tests.ollama_standin)."""
