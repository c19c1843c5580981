"""libra_kernels: fused log-prob gathering, KL estimators and the clipped GRPO loss (Triton + PyTorch).

Every op takes ``backend=None|"auto"|"torch"|"triton"``; results that feed a loss are fp32 whatever
the input dtype. See docs/kernels.md for the API and the benchmark figures.
"""

from .group_advantages import group_advantages
from .grpo_loss import AGGREGATIONS, AGGS, RATIO_LEVELS, grpo_loss
from .kl_penalty import kl_penalty
from .linear_grpo_loss import linear_grpo_loss
from .linear_token_logprobs import linear_token_logprobs
from .token_logprobs import token_logprobs

__all__ = ["AGGREGATIONS", "AGGS", "RATIO_LEVELS", "token_logprobs", "linear_token_logprobs", "kl_penalty", "grpo_loss",
           "linear_grpo_loss", "group_advantages"]
__version__ = "0.1.0"
