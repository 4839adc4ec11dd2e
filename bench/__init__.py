"""The benchmark: both chat servers and an asyncio baseline, side by side (`make bench`).

Not tests: pytest never collects this folder (its testpaths are tests/ and section_*/).
`python -m bench.run` is the entry point; see run.py.
"""
