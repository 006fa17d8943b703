"""Shared test settings: one torch thread, since the tests' tensors are tiny and CI machines are shared."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
