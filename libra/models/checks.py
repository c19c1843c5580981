"""What the rest of the system asks about a model folder before paying for it: does it exist and look like
a transformers directory (``check_model_dir``), and which weights does it hold (``weights_fingerprint``).

The fingerprint keys every reuse of work done by a model (generations, judgments, reference log-probs):
a folder retrained in place has new weights under the old path, so the path alone must never decide that
old work is still valid. It is a sha256 over the content of the weight files (and config.json), each file's
digest cached by (path, size, mtime) in ``~/.cache/libra/fingerprints.json``, so a second look at an
unchanged folder costs a few ``stat`` calls.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
_CHUNK = 1 << 24


def check_model_dir(model: str) -> Path:
    """A local model directory must exist and hold ``config.json``; anything else is a hub id, which only
    works where the hub is reachable (the error then comes from the loader)."""
    path = Path(model)
    looks_local = path.is_absolute() or model.startswith(".") or path.exists() or model.count("/") != 1
    if looks_local:
        if not path.is_dir():
            raise FileNotFoundError(f"model path {model!r} does not exist (expected a directory written by "
                                    "save_pretrained, or a hub id like org/name)")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model path {model!r} has no config.json: not a transformers model directory")
    return path


def _cache_path() -> Path:
    root = os.environ.get("LIBRA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "libra"
    return Path(root) / "fingerprints.json"


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, cache: dict) -> None:
    try:  # a cache that cannot be written only costs a rehash next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(path)
    except OSError:
        pass


def file_digest(path: Path, cache: dict | None = None) -> str:
    """sha256 of a file's content; ``cache`` maps "path|size|mtime_ns" to known digests (updated in place)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if cache is not None and key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    digest = h.hexdigest()
    if cache is not None:
        cache[key] = digest
    return digest


def weights_fingerprint(model: str | os.PathLike) -> str:
    """A short content hash of a model folder's weights and config (``sha256:<24 hex>``); a hub id (not a
    local folder) is its own fingerprint (``hub:<id>``: what the hub serves under it is not ours to hash)."""
    path = Path(model)
    if not path.is_dir():
        return f"hub:{model}"
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in path.glob(pattern) if p.is_file()})
    if (path / "config.json").is_file():
        files.append(path / "config.json")
    if not files:
        raise FileNotFoundError(f"model folder {str(model)!r} holds no weight files ({', '.join(WEIGHT_PATTERNS)})")
    cache_file = _cache_path()
    cache = _load_cache(cache_file)
    before = len(cache)
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{file_digest(f, cache)}\n".encode())
    if len(cache) != before:
        _save_cache(cache_file, cache)
    return f"sha256:{h.hexdigest()[:24]}"
