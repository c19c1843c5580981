"""libra-rm: Libra Bench, the V2V data pipeline and Libra-RM training on top of ``libra_kernels``."""

__version__ = "0.1.0"
