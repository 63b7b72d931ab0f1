"""Make the collection importable as ansible_collections.neuralinternet.compute."""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_DIR = os.path.join(REPO_ROOT, ".build")


def ensure_importable():
    """Put a .build/ansible_collections/neuralinternet/compute link to this checkout on sys.path."""
    link = os.path.join(BUILD_DIR, "ansible_collections", "neuralinternet", "compute")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        # Relative, so the link survives moving the checkout.
        os.symlink(os.path.relpath(REPO_ROOT, os.path.dirname(link)), link)
    if BUILD_DIR not in sys.path:
        sys.path.insert(0, BUILD_DIR)
    return BUILD_DIR
