"""What is computed: the real torch steps of clients and server, and evaluation. No simulated time here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from simulator.learning.exits import threshold_outcome
from simulator.learning.primitives import make_optimizer, quantize, state_bytes

if TYPE_CHECKING:
    from simulator.learning.copies import Copies

__all__ = [
    "make_optimizer",
    "quantize",
    "BatchSampler",
    "ClientTrainer",
    "ServerPath",
    "EvalResult",
    "evaluate_modules",
    "evaluate_path",
    "local_test_weights",
    "state_bytes",
]


class BatchSampler:
    """Endless shuffled batches over one client's sample indices (reshuffled each pass, from its own generator)."""

    def __init__(self, indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        self.indices = indices  # (n,) int64, on the compute device
        self.batch_size = min(batch_size, int(indices.numel()))
        self.generator = generator  # CPU generator: same draws on CPU and GPU runs
        self._perm = self._new_perm()
        self._cursor = 0

    def _new_perm(self) -> torch.Tensor:
        order = torch.randperm(self.indices.numel(), generator=self.generator)
        return self.indices[order.to(self.indices.device)]

    def next(self) -> torch.Tensor:
        end = self._cursor + self.batch_size
        if end <= self._perm.numel():
            idx = self._perm[self._cursor : end]
            self._cursor = end
            return idx
        head = self._perm[self._cursor :]
        self._perm = self._new_perm()
        self._cursor = self.batch_size - head.numel()
        return torch.cat([head, self._perm[: self._cursor]])

    def state_dict(self) -> dict:
        return {"perm": self._perm.cpu(), "cursor": self._cursor, "gen": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self._perm = state["perm"].to(self.indices.device)
        self._cursor = state["cursor"]
        self.generator.set_state(state["gen"])


class ClientTrainer:
    """One client's part: u1..u_cut plus its exit head, trained on the exit loss only.

    Its state is copy `k` of `part` (all clients at one cut share the rows and the worker modules `part.pieces`);
    `body` and `exit` are the worker's modules, pointed at this client's copy by `bind()`.
    """

    def __init__(self, part: Copies, k: int, body: nn.Sequential, sampler: BatchSampler, activation_dtype: str) -> None:
        self.part = part
        self.k = k
        self.cut = len(body)
        self.body = body  # the worker's u1..u_cut as one Sequential (shared by the clients at this cut)
        self.exit = part.pieces[-1]
        self.sampler = sampler
        self.activation_dtype = activation_dtype
        self.loss_sum = torch.zeros((), device=sampler.indices.device)  # summed on device: no per-step sync
        self.loss_count = 0

    def bind(self) -> None:
        """Points the worker modules and optimizer at this client's copy."""
        self.part.bind(self.k)

    def tensors(self, *, buffers: bool = True) -> list[torch.Tensor]:
        """Views of this client's parameters (u1..u_cut, then the exit head's), then its floating buffers."""
        return self.part.tensors(self.k, buffers=buffers)

    def unit_tensors(self, piece: int, *, buffers: bool) -> list[torch.Tensor]:
        """Views of one piece of this client's copy: unit u_{piece+1} (piece < cut) or the exit head (piece = cut)."""
        return self.part.tensors(self.k, piece, buffers=buffers)

    def step(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        on_features: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: forward to the cut and the exit, backward on the exit loss, optimizer step.

        Returns (h as sent, detached and quantized: (B, C_l, H_l, W_l); labels (B,)). No gradient ever
        comes back from the server. ``on_features(h, y)``, if given, gets them as soon as the forward to the cut is
        done, before the exit head and the backward (a real device hands them to its radio then).
        """
        idx = self.sampler.next()
        x, y = train_x[idx], train_y[idx]  # (B, C, H, W), (B,)
        self.bind()
        opt = self.part.optimizer
        assert opt is not None
        self.body.train()
        self.exit.train()
        h = self.body(x)
        sent = quantize(h.detach(), self.activation_dtype)
        if on_features is not None:
            on_features(sent, y)
        loss = F.cross_entropy(self.exit(h), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.part.commit(self.k)
        self.loss_sum += loss.detach()
        self.loss_count += 1
        return sent, y

    def take_mean_loss(self) -> float:
        """Mean exit loss since the last call (one host sync per round)."""
        mean = float(self.loss_sum) / self.loss_count if self.loss_count else float("nan")
        self.loss_sum.zero_()
        self.loss_count = 0
        return mean


class ServerPath:
    """The server's part serving one cut: u_{cut+1}..u9 + classifier (`seq`), with an optimizer.

    Either a module of its own (Sequential's shared model) or copy `k` of `copies` (Averaging's per-client server
    models), whose worker `seq` is pointed at the copy by `bind()`.
    """

    def __init__(
        self, seq: nn.Module, cut: int, optimizer: torch.optim.Optimizer, copies: Copies | None = None, k: int = 0
    ) -> None:
        self.seq = seq
        self.cut = cut
        self.optimizer = optimizer
        self.copies = copies
        self.k = k

    def bind(self) -> None:
        if self.copies is not None:
            self.copies.bind(self.k)

    def step(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward from the cut to the classifier, cross-entropy, backward, optimizer step; the detached loss."""
        self.bind()
        self.seq.train()
        loss = F.cross_entropy(self.seq(h), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.copies is not None:
            self.copies.commit(self.k)
        return loss.detach()


@dataclass(frozen=True)
class EvalResult:
    """Per-sample outcomes on the test split for one client's exit and its path through the server."""

    exit_correct: torch.Tensor | None  # (N,) bool; None for methods without an early exit (baselines)
    final_correct: torch.Tensor | None  # (N,) bool; None without a server path (standalone_exit)
    exit_entropy: torch.Tensor | None  # (N,) normalized entropy H/log(C) of the exit softmax, in [0, 1]
    # (N,) float64 weight of each test sample in the client's own label distribution (local_test_weights)
    local_weights: torch.Tensor | None = None

    def _local(self, correct: torch.Tensor | None) -> float:
        if correct is None or self.local_weights is None:
            return float("nan")
        w = self.local_weights
        return float((correct.to(w.dtype) * w).sum() / w.sum())

    @property
    def exit_accuracy_local(self) -> float:
        """Exit accuracy on the test split reweighted to the client's training label distribution."""
        return self._local(self.exit_correct)

    @property
    def final_accuracy_local(self) -> float:
        """Server-path accuracy on the test split reweighted to the client's training label distribution."""
        return self._local(self.final_correct)

    @property
    def exit_accuracy(self) -> float:
        if self.exit_correct is None:
            return float("nan")
        return float(self.exit_correct.float().mean())

    @property
    def final_accuracy(self) -> float:
        if self.final_correct is None:
            return float("nan")
        return float(self.final_correct.float().mean())

    def threshold_outcome(self, threshold: float) -> tuple[float, float] | None:
        """(accuracy, exit_rate) at normalized-entropy threshold τ (learning.exits); None for a method without an
        exit or without a server path."""
        if self.exit_correct is None or self.exit_entropy is None or self.final_correct is None:
            return None
        return threshold_outcome(self.exit_correct, self.final_correct, self.exit_entropy, threshold)


def local_test_weights(train_labels: torch.Tensor, test_y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) weight of each test sample so that the weighted test split has the label distribution of
    `train_labels` (a client's shard): sample n of class c weighs p(c) / (test samples of class c), where p(c) is
    class c's share of the shard. Accuracy under these weights = sum over classes of p(c) × the accuracy on class
    c. A class the shard has but the test split lacks cannot be measured: the weights then sum to less than one
    and accuracies divide by their sum (the other classes, renormalized)."""
    train = torch.bincount(train_labels.cpu().long(), minlength=num_classes).double()  # (C,)
    test = torch.bincount(test_y.cpu().long(), minlength=num_classes).double()  # (C,)
    per_class = torch.where(test > 0, train / train.sum() / test.clamp_min(1.0), torch.zeros_like(test))
    return per_class[test_y.cpu().long()]  # (N,)


@torch.no_grad()
def evaluate_modules(
    body: nn.Module | None,
    exit_head: nn.Module | None,
    server: nn.Module,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    batch_size: int,
    activation_dtype: str = "fp32",
) -> EvalResult:
    """The whole test split, in eval mode (each module's mode is restored after): `body` (None: the input itself)
    -> `exit_head`, which sees h on the device, before the wire; and `body` -> the wire's quantization ->
    `server`, or `server` alone without a body. Without an exit head the exit fields of the result are None."""
    modules = [m for m in (body, exit_head, server) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    exit_ok, final_ok, ent = [], [], []
    num_classes = None
    for start in range(0, test_x.shape[0], batch_size):
        x, y = test_x[start : start + batch_size], test_y[start : start + batch_size]  # (B, C, H, W), (B,)
        h = x if body is None else body(x)
        if exit_head is not None:
            exit_logits = exit_head(h)
            num_classes = exit_logits.shape[1]
            logp = F.log_softmax(exit_logits, dim=1)
            ent.append(-(logp.exp() * logp).sum(dim=1))
            exit_ok.append(exit_logits.argmax(dim=1) == y)
        final_ok.append(server(h if body is None else quantize(h, activation_dtype)).argmax(dim=1) == y)
    for m, mode in zip(modules, modes):
        m.train(mode)
    if exit_head is None:
        return EvalResult(exit_correct=None, final_correct=torch.cat(final_ok).cpu(), exit_entropy=None)
    entropy = torch.cat(ent) / torch.log(torch.tensor(float(num_classes or 2)))
    return EvalResult(torch.cat(exit_ok).cpu(), torch.cat(final_ok).cpu(), entropy.clamp(0, 1).cpu())


def evaluate_path(
    client: ClientTrainer, server: ServerPath, test_x: torch.Tensor, test_y: torch.Tensor, batch_size: int
) -> EvalResult:
    """Client body -> exit head, and client body -> server part, in eval mode, on the whole test split."""
    client.bind()
    server.bind()
    return evaluate_modules(client.body, client.exit, server.seq, test_x, test_y, batch_size, client.activation_dtype)
