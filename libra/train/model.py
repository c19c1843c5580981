"""The trained model: a transformers causal LM whose output head is one of our fused kernels, sharded
with FSDP2.

``FusedHeadLM`` keeps the backbone (``model``) and the LM head (``lm_head``) under their transformers
names, so checkpoints and exports use the names every tool expects, but its forward stops at the final
hidden states and hands them with the head weight to a ``head`` function (``libra_kernels``
``linear_token_logprobs`` or ``linear_grpo_loss``): the [tokens, vocab] logits are never materialised.
Computing the head inside the root module's forward is also what FSDP2 needs: the root unit (embedding,
final norm, tied head) is all-gathered around this forward, so the head weight is whole when used.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

from libra.train.dist import World

R = TypeVar("R")
# The kernels return reshaped (view) outputs; FSDP2 warns that an in-place op on such a view would skip its
# hook. Our losses never modify the head's outputs in place, so the warning says nothing here.
warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
Head = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], R]


class FusedHeadLM(nn.Module):
    def __init__(self, causal_lm: nn.Module):
        super().__init__()
        self.model = causal_lm.model
        self.lm_head = causal_lm.lm_head
        self.config = causal_lm.config
        self.generation_config = getattr(causal_lm, "generation_config", None)

    def forward(self, input_ids: torch.Tensor, head: Head, *, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> R:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False).last_hidden_state
        return head(hidden, self.lm_head.weight, self.lm_head.bias)


def load_causal_lm(path: str | Path, *, trust_remote_code: bool = False, activation_checkpointing: bool = False,
                   liger: bool = False) -> nn.Module:
    """fp32 master weights from a transformers directory (safetensors only). ``liger`` swaps in
    Liger-Kernel's RMSNorm/RoPE/SwiGLU (CUDA only; the LM head is ours either way)."""
    from transformers import AutoModelForCausalLM

    from libra.models.checks import check_model_dir

    check_model_dir(str(path))
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code,
                                              use_safetensors=True, attn_implementation="sdpa")
    if liger:
        if not torch.cuda.is_available():
            raise ValueError("model.liger needs CUDA (Liger-Kernel's Triton kernels); set model.liger=false on CPU")
        from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=lm, cross_entropy=False, fused_linear_cross_entropy=False)
    if activation_checkpointing:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return lm


def shard(model: FusedHeadLM, world: World, *, mixed_precision: bool) -> FusedHeadLM:
    """FSDP2: one unit per decoder block, then the root (embedding, final norm, head). With
    ``mixed_precision`` (bf16 compute, fp32 gradient reduction; GPU runs) the fp32 master weights stay
    sharded and only the gathered copies are bf16."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    model.to(world.device)
    mesh = init_device_mesh(world.device.type, (world.world_size,))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision \
        else MixedPrecisionPolicy()
    for block in model.model.layers:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def full_state_dict(model: nn.Module, *, rank0_cpu: bool = False) -> dict[str, torch.Tensor]:
    """Every parameter whole (a collective: all ranks must call it). By default every rank gets it on
    its device (the rollout engine's weight sync); with ``rank0_cpu`` only rank 0 gets it, on CPU, and
    the others get an empty dict (exports: no rank holds more than one full copy in host memory)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=rank0_cpu))
