"""The benchmark suite: ``python -m benchmarks.run [--quick] [--only NAME] [--out benchmarks/results]``.

Not part of the test run. Every measurement runs the provider's real code (lake reader, export engine,
API client) against local files and the local Omnisend emulator on 127.0.0.1, and reports each figure
next to a baseline measured in the same run. See ``docs/performance.md``.
"""
