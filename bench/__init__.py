"""The benchmark of issue 4: ts-segmenter vs a re-implementation of the seed, quality and speed.

Run it with ``make bench`` (``python -m bench``; ``--help`` lists the development shortcuts).
Not part of ``make test``; ``tests/bench/test_baseline.py`` checks the baseline itself.
"""
