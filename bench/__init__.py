"""Benchmarks: retrieval quality (retrieval.py) and speed; run by `make bench*`, never by `make test`."""
