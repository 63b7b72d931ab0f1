# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real GPU models for the unit tests: (name as the driver reports it, memory.total in MiB, size
printed on the card in decimal GB). From the project's shared gpus.json, which is not part of the
collection."""

from __future__ import annotations

GPU_MODELS = (
    ("NVIDIA H200", 143771, 141),
    ("NVIDIA H100 80GB HBM3", 81559, 80),
    ("NVIDIA H100 PCIe", 81559, 80),
    ("NVIDIA A100-SXM4-80GB", 81920, 80),
    ("NVIDIA A100-PCIE-40GB", 40960, 40),
    ("NVIDIA L40S", 46068, 48),
    ("NVIDIA RTX A6000", 49140, 48),
    ("NVIDIA GeForce RTX 4090", 24564, 24),
    ("NVIDIA GeForce RTX 3090", 24576, 24),
    ("NVIDIA A10G", 23028, 24),
    ("NVIDIA L4", 23034, 24),
    ("Tesla T4", 15360, 16),
)
