"""Kept for tools that still call setup.py; all metadata lives in pyproject.toml.

The kernel library lives in the top-level folder ``kernels/`` but installs as ``libra_kernels``:
the import name ``kernels`` belongs to a Hugging Face package that transformers probes for.
"""

from setuptools import setup

setup()
