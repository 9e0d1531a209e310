"""Developer tools that read the whole system: the generators of `make docs` that build every
service to describe it (the AsyncAPI document, the README's settings table).

They live here, not in `shared/`, because they import the services: `shared/` is the seedwork the
services import, and imports nothing of theirs (tests/unit/test_layers.py keeps it so).
"""
