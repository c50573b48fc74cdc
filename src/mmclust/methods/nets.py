"""Network pieces and training helpers shared by the methods (no paper-specific logic here)."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

__all__ = ["mlp", "MinibatchDiscrimination", "xavier_init_", "kmeans_centers", "minibatches", "check_finite",
           "clip_parameters_", "EpochLosses", "fused_adam", "masked_input", "l1_closeness", "fused_closeness", "fused_kernels_state"]


def mlp(dims, batchnorm: bool = False, final_activation: bool = True, negative_slope: float = 0.2,
        final_batchnorm: bool | None = None) -> nn.Sequential:
    """Fully connected stack ``dims[0] -> ... -> dims[-1]``: Linear (+ BatchNorm1d) + LeakyReLU per layer.

    ``final_activation=False`` leaves the last layer linear (a logit or an unconstrained code);
    ``final_batchnorm`` (default: same as ``batchnorm``) controls BatchNorm on the last layer alone.
    """
    final_batchnorm = batchnorm if final_batchnorm is None else final_batchnorm
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b))
        if not last or final_activation:
            if batchnorm and (not last or final_batchnorm):
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.LeakyReLU(negative_slope))
    return nn.Sequential(*layers)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, Section 3.2), the "mini-batch layer" of CIGIT-C Table 5.

    Each sample gets ``n_kernels`` features that measure how close it is to the other samples of the
    batch, so the discriminator can tell a collapsed (low-diversity) batch of fakes from real data.
    """

    def __init__(self, in_features: int, n_kernels: int = 16, kernel_dim: int = 8):
        super().__init__()
        self.n_kernels, self.kernel_dim = n_kernels, kernel_dim
        self.T = nn.Parameter(torch.empty(in_features, n_kernels * kernel_dim))
        nn.init.normal_(self.T, std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x @ self.T).view(-1, self.n_kernels, self.kernel_dim).transpose(0, 1)  # (kernels, n, dim)
        return torch.cat([x, l1_closeness(m).T], dim=1)


def l1_closeness(m: torch.Tensor) -> torch.Tensor:
    """``c[k, i] = sum_{j != i} exp(-||m[k, i] - m[k, j]||_1)`` for ``m`` of shape (kernels, n, dim): how close each
    row is to the other rows of its batch under each kernel (the features of Salimans et al.'s minibatch layer).

    The same values as ``torch.exp(-torch.cdist(m, m, p=1)).sum(2) - 1``, with a backward of its own: autograd
    differentiates that expression through cdist's two arguments separately (two sign-weighted sums over the
    (kernels, n, n) distances, plus transposed copies of them), while both arguments are the same rows. Here the
    incoming gradient is folded once, ``w = -(g_i + g_j) exp(-d_ij)`` (symmetric: row i's distance to j enters
    both c_i and c_j), and one sign-weighted sum over the distances gives the whole gradient.

    On the CPU, batches of at least ``FUSED_MIN_ROWS`` rows go through fused kernels (:func:`fused_closeness`);
    elsewhere, or when those cannot be built, through cdist.
    """
    return _L1Closeness.apply(m)


# Below this many rows a batch's pairwise work is too small for the fused kernels to pay (and tiny shapes would each
# cost a compilation of their own).
FUSED_MIN_ROWS = 32


def _pairwise_l1(mt: torch.Tensor) -> torch.Tensor:
    """``(kernels, n, n)`` L1 distances of the rows of ``mt``, laid out (kernels, dim, n): a sum over dim of
    broadcast differences, which a compiler fuses into one loop over the pairs (never materialised eagerly)."""
    return (mt[:, :, :, None] - mt[:, :, None, :]).abs().sum(1)


def _closeness_forward(mt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(c, near)``: the closeness features ``(kernels, n)`` and ``near = exp(-d)``, kept for the backward."""
    near = torch.exp(-_pairwise_l1(mt))
    return near.sum(2) - 1.0, near


def _closeness_backward(mt: torch.Tensor, near: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. ``mt`` (kernels, dim, n): ``sum_j w_ij sign(m_i - m_j)`` with ``w = -(g_i + g_j) near_ij``.

    One expression over every dimension rather than a Python loop over them: a loop would make the compiler build
    the kernel again for each ``dim`` (and, past torch's limit of compilations per function, silently run it
    eagerly); measured 10-25 % slower than the loop on 16 x 8 x 190, and one kernel serves every shape."""
    weight = -(grad[:, :, None] + grad[:, None, :]) * near
    return (weight[:, None] * torch.sign(mt[:, :, :, None] - mt[:, :, None, :])).sum(3)


_FUSED: dict = {}


def fused_closeness():
    """``(forward, backward)`` of the closeness features compiled into fused CPU kernels, or ``None``.

    Measured on the CPU (16 kernels x 8 dims, 190 rows, 1 thread): forward 0.50 ms and backward about 0.9 ms, against
    3.9 ms for cdist's forward and backward with the exp and the weights around them. Compiling takes 10-25 s in a
    process on 2 busy cores, about 1 s once torch's on-disk cache holds the kernels (the next processes).
    ``MMCLUST_COMPILE=0`` turns it off; where compiling is impossible (no C++ compiler) a warning says so once and
    cdist is used. Runs record which path they took (:func:`fused_kernels_state`).
    """
    if _compile_turned_off():
        return None
    if "kernels" not in _FUSED:
        _FUSED["kernels"] = (torch.compile(_closeness_forward, dynamic=True), torch.compile(_closeness_backward, dynamic=True))
    return _FUSED["kernels"]


def fused_kernels_state() -> str:
    """What this process's minibatch layers ran on, for a run's record: ``"off"`` (``MMCLUST_COMPILE=0``),
    ``"unused"`` (no batch took them yet), ``"on"`` (built and used), ``"failed"`` (cdist after a failure)."""
    if "kernels" in _FUSED and _FUSED["kernels"] is None:
        return "failed"
    if _compile_turned_off():
        return "off"
    return "on" if "kernels" in _FUSED else "unused"


def _compile_turned_off() -> bool:
    return os.environ.get("MMCLUST_COMPILE", "1").strip().lower() in ("0", "off", "false", "no")


def _fused_failed(error: Exception) -> None:
    import warnings

    _FUSED["kernels"] = None
    message = str(error).splitlines()[0] if str(error) else ""
    warnings.warn(f"the minibatch layer's fused CPU kernels failed ({type(error).__name__}: {message}); this process "
                  "uses cdist from here on (its numbers differ from the kernels' at float32 rounding)", RuntimeWarning,
                  stacklevel=3)


def _inside_a_mode() -> bool:
    """Whether a tensor mode is active (torch's FlopCounterMode, fake tensors, tracers): compiled code is not called
    then. Measured: one call of the compiled kernels under FlopCounterMode made torch run them as plain eager
    Python for the rest of the process (13.8 ms a call instead of 1.8 ms, with no warning)."""
    return torch._C._len_torch_dispatch_stack() > 0 or torch._C._len_torch_function_stack() > 0


class _L1Closeness(torch.autograd.Function):
    @staticmethod
    def forward(ctx, m):
        usable = m.device.type == "cpu" and m.shape[1] >= FUSED_MIN_ROWS and not _inside_a_mode()
        kernels = fused_closeness() if usable else None
        if kernels is not None:
            mt = m.transpose(1, 2).contiguous()
            try:
                out, near = kernels[0](mt)
            except Exception as error:  # a compiler missing or broken: the same values from cdist below
                _fused_failed(error)
            else:
                ctx.fused = True
                ctx.save_for_backward(mt, near)
                return out
        ctx.fused = False
        dist = torch.cdist(m, m, p=1.0)  # (kernels, n, n) without an (n, n, kernels, dim) intermediate
        near = torch.exp(-dist)
        ctx.save_for_backward(m, dist, near)
        return near.sum(2) - 1.0  # minus the row itself (distance 0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grad = grad.contiguous()  # it arrives transposed (a slice of the layer's cat): a transposed weight otherwise,
        # which cdist's backward would copy whole (n times the size of this copy)
        if ctx.fused:
            mt, near = ctx.saved_tensors
            kernels = _FUSED.get("kernels")
            if kernels is not None and not _inside_a_mode():
                try:
                    return kernels[1](mt, near, grad).transpose(1, 2)
                except Exception as error:
                    _fused_failed(error)
            return _closeness_backward(mt, near, grad).transpose(1, 2)  # the same formula, eagerly
        m, dist, near = ctx.saved_tensors
        weight = (grad[:, :, None] + grad[:, None, :]).mul_(near).neg_()
        # sum_j weight_ij * sign(m_i - m_j), cdist's own p=1 backward kernel (sign(0) = 0 on the diagonal)
        return torch.ops.aten._cdist_backward(weight, m, m, 1.0, dist)


@torch.no_grad()
def xavier_init_(module: nn.Module, generator: torch.Generator) -> None:
    """Xavier-uniform weights and zero biases from a local generator (repeatable, no global RNG)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            nn.init.zeros_(m.bias)
        elif isinstance(m, MinibatchDiscrimination):
            nn.init.normal_(m.T, std=0.1, generator=generator)


def kmeans_centers(z: torch.Tensor, k: int, n_init: int, seed: int, *, max_iter: int = 300, tol: float = 1e-4) -> torch.Tensor:
    """k-means (best of ``n_init``) on ``z``; returns the centres on z's device and dtype.

    ``max_iter`` and ``tol`` are passed to scikit-learn (defaults: scikit-learn's own, 300 and 1e-4).
    """
    x = z.detach().cpu().double().numpy()
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed, max_iter=max_iter, tol=tol).fit(x)
    return torch.as_tensor(km.cluster_centers_, dtype=z.dtype, device=z.device)


@torch.no_grad()
def clip_parameters_(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of ``module`` (weights and biases alike) into ``[-clip, clip]`` in place.

    The weight clipping of WGAN (Arjovsky et al. 2017, Algorithm 1), which keeps a critic K-Lipschitz.
    """
    if not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    for p in module.parameters():
        p.clamp_(-clip, clip)


def minibatches(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """A random partition of ``0..n-1`` into index tensors (slices of on-device data, no DataLoader)."""
    order = torch.randperm(n, generator=generator, device=generator.device).to(device)
    return list(order.split(batch_size))


def check_finite(value: torch.Tensor, what: str, epoch: int) -> None:
    from .base import DivergenceError

    if not torch.isfinite(value).all():
        raise DivergenceError(f"{what} became non-finite at epoch {epoch}", epoch=epoch)


class EpochLosses:
    """Per-batch losses kept on the device and read back once per epoch (one host synchronisation, not one a batch).

    ``add(key, loss)`` keeps a detached scalar; ``check(epoch)`` copies the pending ones to the host at once and
    adds each to its key's running sum in batch order in float64, the very numbers a running
    ``total += float(loss)`` gives; ``pop_totals(epoch)`` checks and returns the sums and starts new ones.
    A non-finite loss raises :class:`DivergenceError` at the check, naming the first one in batch order (``what``
    maps a key to the words of the message) and the epoch: a run fails at the same epoch as with a check after
    every batch.
    """

    def __init__(self, what: dict | None = None):
        self.what = dict(what or {})
        self._keys: list[str] = []
        self._values: list[torch.Tensor] = []
        self._sums: dict[str, float] = {}

    def add(self, key: str, loss: torch.Tensor) -> None:
        self._keys.append(key)
        self._values.append(loss.detach().reshape(()))

    def check(self, epoch: int) -> None:
        """Fold the pending losses into the sums; raise if one is not finite."""
        keys, values = self._keys, self._values
        self._keys, self._values = [], []
        if not values:
            return
        host = torch.stack(values).double().cpu().tolist()  # one host synchronisation for all pending losses
        for key, value in zip(keys, host):
            if not np.isfinite(value):
                from .base import DivergenceError

                raise DivergenceError(f"{self.what.get(key, key)} became non-finite at epoch {epoch}", epoch=epoch)
            self._sums[key] = self._sums.get(key, 0.0) + value

    def pop_totals(self, epoch: int) -> dict[str, float]:
        """Per-key sums of every loss added since the last ``pop_totals`` (checked first)."""
        self.check(epoch)
        sums, self._sums = self._sums, {}
        return sums


def fused_adam(params, lr: float, betas: tuple = (0.9, 0.999)) -> torch.optim.Adam:
    """Adam whose update of all parameters is one fused kernel (``fused=True``, CPU and CUDA).

    Measured on the CPU for DEC's BDGP auto-encoder (4.3 M parameters): 2.8 ms a step against 14.5 ms for the
    per-tensor loop torch picks by default there, and 13.2 ms with ``foreach=True``. The same Adam arithmetic;
    parameters differ from the loop's by rounding only (at most 5e-8 after 23 steps of that test).
    """
    return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)


def as_device_tensor(x: np.ndarray, device) -> torch.Tensor:
    # a copy: datasets hold read-only arrays, and the device tensor must not alias them
    return torch.tensor(np.asarray(x), dtype=torch.float32, device=device)


def masked_input(inp: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """A denoising auto-encoder's input: each entry zeroed with probability ``rate``, the rest scaled by
    ``1 / (1 - rate)`` (inverted dropout), drawn from ``generator`` as ``inp * (u >= rate) / (1 - rate)`` with
    ``u = rand(inp.shape)``.

    Computed in place on the uniforms' buffer: the same numbers, bit for bit (signed zeros and NaN included), as that
    three-temporary expression, in ``inp``'s dtype. Measured on a 256 x 1750 BDGP batch, 1 thread: 1.5 ms against
    2.0 ms (of which 1.4 ms draw the uniforms).
    """
    keep = torch.rand(inp.shape, generator=generator, device=generator.device).to(inp.device)
    return keep.ge_(rate).to(inp.dtype).mul_(inp).div_(1.0 - rate)


def pretrain_autoencoders(pairs, epochs: int, lr: float, batch_size: int, generator: torch.Generator, device,
                          corruption: float = 0.0, desc: str = "pretrain", verbose: bool = False,
                          min_batch: int = 1) -> list[dict]:
    """Train (encoder, decoder, x, name) auto-encoders with MSE, interleaved epoch by epoch; returns history.

    ``corruption`` > 0 makes them denoising auto-encoders (inputs masked by dropout with that rate,
    as the stacked denoising auto-encoders of DEC / JECL). Each pair has its own Adam optimiser.
    Batches of fewer than ``min_batch`` rows are skipped (2 for networks with BatchNorm, which needs two rows).
    """
    from torch.nn import functional as F
    from tqdm.auto import tqdm

    opts = [fused_adam(list(enc.parameters()) + list(dec.parameters()), lr=lr) for enc, dec, _, _ in pairs]
    history = []
    losses = EpochLosses({f"{name}_reconstruction": f"{name} reconstruction loss" for _, _, _, name in pairs})
    for epoch in tqdm(range(epochs), desc=desc, disable=not verbose, unit="epoch"):
        n_batches = {}
        for (enc, dec, x, name), opt in zip(pairs, opts):
            enc.train()
            dec.train()
            batches = [b for b in minibatches(x.shape[0], batch_size, generator, device) if b.numel() >= min_batch]
            n_batches[name] = len(batches)
            for idx in batches:
                target = inp = x[idx]
                if corruption > 0:
                    inp = masked_input(inp, corruption, generator)
                loss = F.mse_loss(dec(enc(inp)), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.add(f"{name}_reconstruction", loss)
        sums = losses.pop_totals(epoch)
        history.append({"epoch": epoch, **{f"{name}_reconstruction": sums.get(f"{name}_reconstruction", 0.0) / n_batches[name]
                                           for _, _, _, name in pairs}})
    return history
