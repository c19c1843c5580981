"""Evaluation of judges and reward models on Libra Bench and pairwise RM benchmarks (pure metrics)."""
