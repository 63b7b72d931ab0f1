"""What every bench shares: the collection and localnet importable, and a timed `python -m localnet`."""

import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402  pylint: disable=wrong-import-position

_collection.ensure_importable()


def localnet(*args):
    """Run `python -m localnet ARGS` from the checkout; returns the seconds it took."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "localnet"] + list(args), cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started
