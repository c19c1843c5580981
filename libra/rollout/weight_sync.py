"""Loading trainer weights into a running vLLM worker (the worker side of ``VLLMEngine.update_weights``).

vLLM mixes :class:`WeightSyncExtension` into its worker class when the engine is created with
``worker_extension_cls="libra.rollout.weight_sync.WeightSyncExtension"``; the driver then calls its
methods through ``LLM.collective_rpc``. RPC arguments are msgspec-encoded, so tensors travel as a
safetensors file (in RAM-backed storage) whose path is the argument.

One update is any number of ``libra_load_bucket`` calls followed by one ``libra_finish_update``.

On CUDA (unquantized models) the model's own ``load_weights`` is all it takes: it maps Hugging Face names onto vLLM's
parameters (q/k/v into ``qkv_proj``, gate/up into ``gate_up_proj``) and copies in place. vLLM's CPU
backend needs more, because after loading it packs every linear layer for its GEMM kernels
(``dispatch_cpu_unquantized_gemm``): the packed copy lives in ``layer.cpu_linear`` and the layer's
parameter is replaced by an empty one, and the tied LM head keeps a packed copy of the embedding. So on
CPU the first bucket gives each emptied linear parameter its full shape back (built by the layer's own
``create_weights``, so the weight loader is attached), the buckets load into those, and the finish
re-runs each layer's ``process_weights_after_loading`` (which re-packs and empties again) on every
module holding a ``cpu_linear``, the LM head included. Skipping the LM head leaves the old logits
projection in place (0.39 nat mean log-prob error measured). Because an emptied parameter cannot be
recovered from its packed copy, a CPU update must send every linear weight; ``libra_finish_update``
raises if one was left out.
"""

from __future__ import annotations

import torch


def _is_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _restore_emptied_linear(layer) -> None:
    """Re-create ``layer.weight`` at full size, exactly as the layer's constructor did."""
    from vllm.model_executor.layers.linear import WEIGHT_LOADER_V2_SUPPORTED

    v2 = type(layer.quant_method).__name__ in WEIGHT_LOADER_V2_SUPPORTED and hasattr(layer, "weight_loader_v2")
    layer.quant_method.create_weights(
        layer=layer, input_size_per_partition=getattr(layer, "input_size_per_partition", layer.input_size),
        output_partition_sizes=layer.output_partition_sizes, input_size=layer.input_size,
        output_size=layer.output_size, params_dtype=layer.params_dtype,
        weight_loader=layer.weight_loader_v2 if v2 else layer.weight_loader,
    )


class WeightSyncExtension:
    """Methods added to the vLLM worker (``self`` is the worker: ``self.model_runner`` holds the model)."""

    def libra_load_bucket(self, path: str) -> int:
        """Load the tensors of one safetensors file (Hugging Face names); returns how many were loaded."""
        from safetensors.torch import load_file

        model = self.model_runner.get_model()
        if _is_cpu() and getattr(self, "_libra_restored", None) is None:
            self._libra_restored = {}
            self._libra_loaded = set()
            for name, module in model.named_modules():
                weight = getattr(module, "weight", None)
                if hasattr(module, "cpu_linear") and hasattr(module, "output_partition_sizes") and \
                        weight is not None and weight.numel() == 0:
                    _restore_emptied_linear(module)
                    self._libra_restored[f"{name}.weight"] = module
        device = next(model.parameters()).device
        tensors = load_file(path, device=str(device))
        if getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            # The engine ties the LM head to the embedding; vLLM rejects a bucket holding the alias without
            # the embedding, which bucketing can produce, so the alias is dropped (the embedding carries it).
            tensors.pop("lm_head.weight", None)
        loaded = model.load_weights(tensors.items())
        if _is_cpu():
            self._libra_loaded.update(loaded or ())
        return len(tensors)

    @torch.no_grad()
    def libra_finish_update(self) -> None:
        """End an update: on CPU, check every emptied linear weight was sent, then re-pack all packed layers."""
        if not _is_cpu():
            return
        restored = getattr(self, "_libra_restored", None) or {}
        missing = sorted(set(restored) - self._libra_loaded)
        self._libra_restored = None
        model = self.model_runner.get_model()
        for module in model.modules():
            if hasattr(module, "cpu_linear") and module.weight.numel() > 0:
                module.quant_method.process_weights_after_loading(module)
        if missing:
            raise ValueError(
                f"update_weights on CPU must send every linear weight: vLLM's CPU backend keeps only a packed copy "
                f"of each one, so {len(missing)} not sent now hold garbage (e.g. {', '.join(missing[:3])}); "
                "send the full state_dict to repair the engine")
