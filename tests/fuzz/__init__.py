"""fglang's fuzzer: hostile models, data files, command lines and posterior files.

The promise under test (issue 16) is that a user's mistake is always a
located ``FgError`` and nothing else: no traceback, hang, out-of-memory or
crash. ``python -m tests.fuzz.run`` runs a campaign; ``tests/test_fuzz_smoke.py``
runs a small fixed-seed budget of every campaign in CI.
"""
