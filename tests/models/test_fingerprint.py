"""The weights fingerprint: content, not path; cheap the second time."""
from libra.models import checks
from libra.models.checks import weights_fingerprint


def test_fingerprint_follows_content_not_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBRA_CACHE", str(tmp_path / "cache"))
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(b"weights-1")
    assert weights_fingerprint(a) == weights_fingerprint(b)  # same content, other path
    (a / "model.safetensors").write_bytes(b"weights-2")
    assert weights_fingerprint(a) != weights_fingerprint(b)
    assert weights_fingerprint("org/name") == "hub:org/name"


def test_unchanged_files_are_not_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBRA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x" * 1000)
    first = weights_fingerprint(tmp_path)
    hashed = []
    real = checks.hashlib.sha256

    def counting(*args):
        hashed.append(1)
        return real(*args)

    monkeypatch.setattr(checks.hashlib, "sha256", counting)
    assert weights_fingerprint(tmp_path) == first
    assert len(hashed) == 1  # only the combining hash: both file digests came from the cache
