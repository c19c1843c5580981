"""Ahead-of-time compile check: every Triton kernel and configuration, for sm_80 and sm_90, on any machine.

``python -m libra_kernels.aot [--caps 80 90] [--json out.json]`` compiles each kernel variant with
``triton.compile(ASTSource(...), target=GPUTarget("cuda", cap, 32))`` (no GPU needed), then runs the
``ptxas`` shipped in the Triton wheel with ``-v`` on the PTX to read registers, spills and shared
memory. It prints a table and exits non-zero on a compile error, or on spills in a main configuration
(the variants the training path launches). Must run without ``TRITON_INTERPRET`` (the interpreter
replaces the JIT functions); the CLI clears it and re-executes itself when needed.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

DTYPES = {"fp32": "*fp32", "bf16": "*bf16"}


@dataclass
class Variant:
    kernel: str
    label: str
    main: bool
    signature: dict
    constexprs: dict
    num_warps: int
    num_stages: int = 3


@dataclass
class Result:
    kernel: str
    label: str
    cap: int
    main: bool
    registers: int | None = None
    spill_bytes: int | None = None
    shared_bytes: int | None = None
    error: str | None = None


def _sig(names_types: str, **constexprs) -> tuple[dict, dict]:
    """'a:*fp32 b:i32 ...' plus constexpr values -> (signature, constexprs) for ASTSource."""
    sig = dict(item.split(":") for item in names_types.split())
    for k in constexprs:
        sig[k] = "constexpr"
    return sig, constexprs


def variants() -> list[Variant]:
    G, L, TL = (_module(m) for m in ("grpo_loss", "linear_token_logprobs", "token_logprobs"))

    out = []
    for dt, ptr in DTYPES.items():
        sig, ce = _sig(f"logits_ptr:{ptr} stride_row:i32 targets_ptr:*i64 logp_ptr:*fp32 lse_ptr:*fp32 ent_ptr:*fp32 "
                       "V:i32 inv_t:fp32", BLOCK=TL.BLOCK_V)
        out.append(Variant("_token_logprobs_fwd", dt, True, sig, ce, TL.NUM_WARPS))
        for has_h in (False, True):
            sig, ce = _sig(f"logits_ptr:{ptr} stride_row:i32 grad_ptr:{ptr} stride_grad:i32 targets_ptr:*i64 "
                           "lse_ptr:*fp32 ent_ptr:*fp32 g_ptr:*fp32 h_ptr:*fp32 V:i32 inv_t:fp32",
                           HAS_H=has_h, BLOCK=TL.BLOCK_V)
            out.append(Variant("_token_logprobs_bwd", f"{dt} entropy-grad={has_h}", True, sig, ce, TL.NUM_WARPS))
        prec = "ieee" if dt == "fp32" else "tf32"
        for has_bias in (False, True):
            cfg = dict(L.CONFIGS[dt]["stats"])
            warps, stages = cfg.pop("num_warps"), cfg.pop("num_stages")
            sig, ce = _sig(f"h_ptr:{ptr} w_ptr:{ptr} b_ptr:{ptr} targets_ptr:*i64 part_ptr:*fp32 N:i32 V:i32 H:i32 "
                           "stride_h:i32 stride_w:i32 v_per_split:i32 inv_t:fp32",
                           HAS_BIAS=has_bias, PRECISION=prec, **cfg)
            out.append(Variant("_linear_stats_kernel", f"{dt} bias={has_bias}", True, sig, ce, warps, stages))
            cfg = dict(L.CONFIGS[dt]["grad"])
            warps, stages = cfg.pop("num_warps"), cfg.pop("num_stages")
            for has_h in (False, True):
                sig, ce = _sig(f"h_ptr:{ptr} w_ptr:{ptr} b_ptr:{ptr} targets_ptr:*i64 lse_ptr:*fp32 ent_ptr:*fp32 "
                               "g_ptr:*fp32 gh_ptr:*fp32 dh_ptr:*fp32 dw_ptr:*fp32 db_ptr:*fp32 N:i32 V:i32 H:i32 "
                               "stride_h:i32 stride_w:i32 v_per_split:i32 inv_t:fp32",
                               HAS_BIAS=has_bias, HAS_H=has_h, PRECISION=prec, **cfg)
                out.append(Variant("_linear_grad_kernel", f"{dt} bias={has_bias} entropy-grad={has_h}", not has_h,
                                   sig, ce, warps, stages))
        for per_tok, has_ref, dual, grad in itertools.product((False, True), repeat=4):
            kinds = range(4) if has_ref else (2,)
            for kind in kinds:
                sig, ce = _sig(f"logp_ptr:{ptr} old_ptr:*fp32 adv_ptr:*fp32 mask_ptr:*fp32 w_ptr:*fp32 ref_ptr:{ptr} "
                               "part_ptr:*fp32 dpg_ptr:*fp32 dkl_ptr:*fp32 B:i32 T:i32 eps_low:fp32 eps_high:fp32 "
                               "dual_clip:fp32 kl_coef:fp32", ADV_PER_TOKEN=per_tok, HAS_REF=has_ref,
                               HAS_DUAL=dual, KL_KIND=kind, WRITE_GRAD=grad, BLOCK=G.BLOCK_T)
                label = f"{dt} adv-per-token={per_tok} ref={has_ref} dual={dual} grad={grad} kl={kind}"
                out.append(Variant("_grpo_kernel", label, True, sig, ce, 4))
        for kind, grad in itertools.product(range(4), (False, True)):
            sig, ce = _sig(f"logp_ptr:{ptr} ref_ptr:{ptr} kl_ptr:*fp32 dkl_ptr:*fp32 n:i32", KIND=kind,
                           WRITE_GRAD=grad, BLOCK=1024)
            out.append(Variant("_kl_fwd", f"{dt} kind={kind} grad={grad}", True, sig, ce, 4))
        for scale in (False, True):
            sig, ce = _sig(f"r_ptr:{ptr} out_ptr:*fp32 G:i32 eps:fp32", SCALE=scale, BLOCK=64)
            out.append(Variant("_group_adv_kernel", f"{dt} scale={scale}", True, sig, ce, 4))
    return out


def _module(name: str):
    """The op's module (the package attribute of the same name is the op function, which shadows it)."""
    return importlib.import_module(f"{__package__}.{name}")


def _kernel_fn(name: str):
    for mod in ("token_logprobs", "linear_token_logprobs", "grpo_loss", "kl_penalty", "group_advantages"):
        if hasattr(_module(mod), name):
            return getattr(_module(mod), name)
    raise KeyError(name)


_PTXAS_RE = {
    "registers": re.compile(r"Used (\d+) registers"),
    "spill_stores": re.compile(r"(\d+) bytes spill stores"),
    "spill_loads": re.compile(r"(\d+) bytes spill loads"),
    "smem": re.compile(r"(\d+) bytes smem"),
}


def _ptxas_info(ptx: str, ptxas: str) -> dict:
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1).rstrip(",")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", path, "-o", os.path.join(tmp, "k.cubin")],
                              capture_output=True, text=True, check=True)
    text = proc.stderr + proc.stdout
    return {k: int(m.group(1)) if (m := r.search(text)) else 0 for k, r in _PTXAS_RE.items()}


def compile_variant(v: Variant, cap: int) -> Result:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    res = Result(v.kernel, v.label, cap, v.main)
    try:
        src = ASTSource(_kernel_fn(v.kernel), v.signature, v.constexprs)
        kernel = triton.compile(src, target=GPUTarget("cuda", cap, 32),
                                options={"num_warps": v.num_warps, "num_stages": v.num_stages})
        ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
        info = _ptxas_info(kernel.asm["ptx"], ptxas)
        res.registers = info["registers"]
        res.spill_bytes = info["spill_stores"] + info["spill_loads"]
        res.shared_bytes = max(int(getattr(kernel.metadata, "shared", 0)), info["smem"])
    except Exception as exc:  # reported per variant; the exit code reflects it
        res.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return res


def run(caps: list[int]) -> list[Result]:
    return [compile_variant(v, cap) for cap in caps for v in variants()]


def _print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Triton AOT compile check (ptxas -v)")
    for col in ("kernel", "variant", "sm", "main", "regs", "spill B", "smem B", "status"):
        table.add_column(col)
    for r in results:
        status = "error" if r.error else ("SPILLS" if r.spill_bytes else "ok")
        table.add_row(r.kernel, r.label, str(r.cap), "yes" if r.main else "", str(r.registers), str(r.spill_bytes),
                      str(r.shared_bytes), status if not r.error else r.error)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", type=int, nargs="+", default=[80, 90])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--quiet", action="store_true", help="no table, only failures")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        return subprocess.call([sys.executable, "-m", "libra_kernels.aot", *(argv or sys.argv[1:])], env=env)
    results = run(args.caps)
    if not args.quiet:
        _print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    bad = [r for r in results if r.error or (r.main and r.spill_bytes)]
    for r in bad:
        print(f"FAIL {r.kernel} [{r.label}] sm_{r.cap}: {r.error or f'{r.spill_bytes} bytes of spills'}")
    print(f"{len(results)} variants compiled, {len(bad)} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
