"""Running a reader in a child Python, so that one that blocks fails a test instead of hanging it."""

import os
import subprocess
import sys

_CODE = """
import importlib, sys
module = importlib.import_module(sys.argv[1])
try:
    getattr(module, sys.argv[2])(sys.argv[4])
except getattr(module, sys.argv[3]) as e:
    print(e)
"""


def refusal_in_child(module: str, function: str, error: str, path, timeout: float = 30) -> str:
    """What ``module.function(path)`` raises as ``module.error``, read in a child process.

    A function that blocks (on a named pipe, say) raises ``subprocess.TimeoutExpired`` after
    ``timeout`` seconds; one that raises something else fails the assertion on its exit code.
    """
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", _CODE, module, function, error, str(path)],
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
