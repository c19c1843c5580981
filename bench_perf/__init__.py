"""Performance benchmark suites (not tests): kernels now, rollout and trainer later.

``common`` holds the measuring, subprocess, JSON and table helpers every suite shares; each suite is a
module runnable with ``python -m bench_perf.<suite>`` that writes ``bench_perf/results/<suite>-<device>.json``.
"""
