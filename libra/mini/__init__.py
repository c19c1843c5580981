"""Libra-Mini: the whole Libra method on a synthetic verifiable-reasoning domain, small enough for a CPU.

``arith`` is the domain (column addition written step by step, and source models that make real-looking
mistakes); ``teacher`` is the programmatic thinking judge that plays DeepSeek-R1's role in rejection
sampling; ``pointwise_mini.txt`` is the shortened judging prompt the tiny judges read.
"""

from pathlib import Path

# A file path, which ``libra.judge.render`` accepts like a built-in template name.
MINI_TEMPLATE = str(Path(__file__).with_name("pointwise_mini.txt"))
# The same prompt inviting the model to think first: RL-zero's prompt (the base has never seen a judgment).
THINK_TEMPLATE = str(Path(__file__).with_name("pointwise_mini_think.txt"))
