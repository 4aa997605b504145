"""The cognition base: knowledge items, embeddings and retrieval.

items.py        item records, the ``cognition_items`` / ``retrievals`` / ``node_vectors`` tables
embedder.py     MiniLM (default, offline), local sentence-transformers, OpenAI-compatible, hash
numpy_bert.py   MiniLM's forward pass in numpy: the same vectors without importing torch
settings.py     the ``cognition:`` and ``novelty:`` configuration sections, checked
base.py         the store: add (near-duplicate flagging), status changes, cosine search
ranking.py      top-k by cosine, run-derived items capped (they would crowd out the seeds)
dedupe.py       which Analyzer proposals are new (text, claim, cosine)
node_vectors.py cached embeddings of node motivations and analyses
novelty.py      the motivations tried so far, as one matrix (the novelty check)
retriever.py    the loop's Retriever: retrieve, propose, novelty
importer.py     YAML, JSONL and Markdown files
setup.py        how ``asi-evolve run`` seeds a new run and builds the retriever
cli.py          ``asi-evolve cognition ...`` and ``asi-evolve report``
report.py       the provenance report
"""
