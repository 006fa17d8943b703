"""Shared test settings: one torch thread — the tests' models are tiny, and torch's thread pool oversubscribes shared CI cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
