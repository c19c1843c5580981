"""`libra env` reports the resolved kernel backend and versions as JSON."""

import json
import subprocess
import sys


def test_libra_env_json():
    proc = subprocess.run([sys.executable, "-m", "libra.cli", "env", "--json"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["kernel_backend_auto"] in ("torch", "triton")
    assert info["packages"]["torch"].startswith("2.")
