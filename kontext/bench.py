"""Placeholder replaced by the benchmark (issue 5)."""


def add_bench_args(p):
    p.add_argument("--model", default="tiny")


def run_bench(args):
    raise RuntimeError("bench is not built yet")
