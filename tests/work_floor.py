"""An epoch's matrix products, optimiser updates and pairwise distances, recorded and replayed: the floor under the
FLOP-bound benchmarks' epochs.

The FLOP bound (square 512 x 512 matmuls with the epoch's multiply-adds) says what the arithmetic would cost at the
machine's best rate. An epoch falls short of it when its own matrix products, at the shapes the paper's batch size
fixes, run slower than square ones, and when it must also do work that is not a matrix product (the optimiser's update
of every parameter, a memory-bound pass; the minibatch layer's pairwise L1 distances). This module measures those: it
records the matrix products, fused optimiser updates and cdist calls one call of a function makes (their operands'
shapes, strides and dtypes, through a torch dispatch mode) and replays them back to back on fresh operands, with nothing
else around them.

The replay is the floor of *this implementation's sequence of operations*: however much the rest of the epoch
(activations, normalisation, indexing, autograd, Python) is sped up, the epoch still makes these calls. It is not a
bound on every implementation of the same arithmetic: one could merge products into larger ones, run independent
branches on separate cores at once, use the symmetry of the pairwise distances, and so go below it.

The replay reuses one set of operands for calls of one signature (as a batch loop reuses its shapes), which keeps
them in cache more than the epoch does, and drops storage offsets (alignment): the floor errs low, never high.
Recorded: dense strided tensors of real dtypes (the benchmarks' epochs); a sparse product is not seen by the mode's
ops and a complex one would be counted as real multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# what counts as a matrix product, an optimiser update, and the minibatch layer's pairwise distances (recorded as the
# cdist calls its eager path makes; a replay can stand the fused kernels the run uses in for them, see ``replay``)
PRODUCTS = frozenset({aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default})
UPDATES = frozenset({aten._fused_adam_.default, aten._fused_adam_.tensor_lr, aten._fused_adamw_.default,
                     aten._fused_adamw_.tensor_lr})
PAIRWISE = frozenset({aten._cdist_forward.default, aten._cdist_backward.default})
KINDS = {"products": PRODUCTS, "updates": UPDATES, "pairwise": PAIRWISE}


@dataclass(frozen=True)
class TensorSpec:
    """What a replay needs to make an operand like the recorded one: shape, strides, dtype, device."""

    shape: tuple
    stride: tuple
    dtype: torch.dtype
    device: str

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorSpec":
        return cls(tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device))

    def make(self, generator: torch.Generator) -> torch.Tensor:
        """A tensor with this layout, float32 uniforms in [0, 1) cast to the dtype (a half-precision cast may round
        up to 1): no negative second moments for an optimiser update to take the root of, no denormals to slow a
        product down."""
        storage = 1 + sum((size - 1) * step for size, step in zip(self.shape, self.stride)) if all(self.shape) else 0
        flat = torch.rand(storage, generator=generator, dtype=torch.float32).to(self.dtype)
        return flat.to(self.device).as_strided(self.shape, self.stride)


def _spec_tree(obj):
    if isinstance(obj, torch.Tensor):
        return TensorSpec.of(obj)
    if isinstance(obj, (list, tuple)):
        return tuple(_spec_tree(o) for o in obj) if isinstance(obj, tuple) else [_spec_tree(o) for o in obj]
    return obj


def _freeze(tree):
    """A hashable key for a spec tree (lists become tuples)."""
    if isinstance(tree, (list, tuple)):
        return (type(tree).__name__, tuple(_freeze(t) for t in tree))
    return tree


@dataclass(frozen=True)
class Call:
    """One recorded operator call: the op and its arguments with every tensor replaced by its :class:`TensorSpec`."""

    op: object
    args: tuple
    kwargs: tuple  # sorted (name, value) pairs

    @property
    def key(self):
        return (self.op, _freeze(self.args), _freeze(self.kwargs))


class _Recorder(TorchDispatchMode):
    def __init__(self, ops):
        super().__init__()
        self.ops, self.calls = ops, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.ops:
            self.calls.append(Call(func, _spec_tree(tuple(args)), tuple(sorted((k, _spec_tree(v)) for k, v in kwargs.items()))))
        return func(*args, **kwargs)


def record_calls(fn, ops=PRODUCTS | UPDATES | PAIRWISE) -> tuple[list[Call], object]:
    """``(calls, result)``: the calls of ``ops`` that ``fn()`` makes, in order, and what it returns.

    Under the recording mode compiled code is not called (see ``nets._inside_a_mode``): the minibatch layer runs its
    eager path, cdist, whose calls are recorded as ``PAIRWISE``; it makes no matrix products, so the products recorded
    are the ones the compiled run makes."""
    recorder = _Recorder(ops)
    with recorder:
        result = fn()
    return recorder.calls, result


def multiply_adds(calls: list[Call]) -> int:
    """Multiply-adds of the recorded matrix products (an addmm's bias add and scaling not counted, as torch's
    FlopCounterMode does not)."""
    total = 0
    for call in calls:
        if call.op in (aten.mm.default, aten.addmm.default):
            a, b = call.args[-2:] if call.op is aten.mm.default else call.args[1:3]
            total += a.shape[0] * a.shape[1] * b.shape[1]
        elif call.op in (aten.bmm.default, aten.baddbmm.default):
            a, b = call.args[-2:] if call.op is aten.bmm.default else call.args[1:3]
            total += a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
    return total


def replay(calls: list[Call], seed: int = 0, substitutes: dict | None = None):
    """A function that makes the recorded calls again, in order, back to back, on fresh operands (one set per call
    signature, made here, not in the timed function).

    ``substitutes`` maps an op to ``prepare(args, kwargs) -> fn``: the call is replaced by ``fn()``, whose operands
    ``prepare`` builds from the materialised ones outside the timed function (how the minibatch layer's fused kernels
    stand in for the cdist calls its eager path was recorded making)."""
    generator = torch.Generator().manual_seed(seed)
    substitutes = substitutes or {}
    prepared: dict = {}

    def materialise(tree):
        if isinstance(tree, TensorSpec):
            return tree.make(generator)
        if isinstance(tree, (list, tuple)):
            return type(tree)(materialise(t) for t in tree)
        return tree

    plan = []
    for call in calls:
        if call.key not in prepared:
            args, kwargs = materialise(call.args), {k: materialise(v) for k, v in call.kwargs}
            if call.op in substitutes:
                prepared[call.key] = substitutes[call.op](args, kwargs)
            else:
                prepared[call.key] = (lambda op, a, kw: lambda: op(*a, **kw))(call.op, args, kwargs)
        plan.append(prepared[call.key])

    def run():
        with torch.no_grad():  # as the fused kernels run inside an autograd function; nothing here needs a graph
            for fn in plan:
                fn()

    return run


def split(calls: list[Call]) -> dict[str, list[Call]]:
    """The calls of each kind in ``KINDS`` (products, updates, pairwise), in order."""
    return {kind: [c for c in calls if c.op in ops] for kind, ops in KINDS.items()}
