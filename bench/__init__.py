"""The benchmark suite: ``python3 bench/run.py [--quick]`` (see ``docs/performance.md``)."""
