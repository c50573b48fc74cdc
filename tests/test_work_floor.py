"""The recorder and replay under the benchmarks' floor (tests/work_floor.py)."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mmclust.data import incomplete, make_multiview_blobs
from mmclust.methods.dec import build_autoencoder
from mmclust.methods.nets import pretrain_autoencoders, xavier_init_
from mmclust.runtime import torch_generator

from .test_benchmarks import small_cigit_c_epochs
from .work_floor import UPDATES, TensorSpec, multiply_adds, record_calls, replay, split


def _autoencoder_epoch(seed=0):
    x = torch.randn(150, 12, generator=torch.Generator().manual_seed(0))
    enc, dec = build_autoencoder(12)
    xavier_init_(enc, torch_generator(1))
    xavier_init_(dec, torch_generator(2))
    gen = torch_generator(seed)
    return lambda: pretrain_autoencoders([(enc, dec, x, "")], 1, 1e-3, 64, gen, "cpu", corruption=0.2)


@pytest.fixture(scope="module")
def cigit_c_epoch():
    """A factory of one small CIGIT-C training epoch (fresh generator each: the same batches every time)."""
    ds = incomplete(make_multiview_blobs(300, 3, dims={"image": 40, "text": 20}, seed=4), 0.4, seed=0)
    model, _, epoch = small_cigit_c_epochs(ds)

    def make():
        return epoch(torch_generator(0))

    make.n_batches = -(-ds.n_samples // model.batch_size)
    make.opts = model._optimizers()
    return make


def test_recorded_products_are_torchs_count_of_the_epoch(cigit_c_epoch):
    """Every matrix product of an epoch is recorded: their multiply-adds equal torch's FLOP counter's (an oracle that
    shares no code with the recorder), for an auto-encoder epoch and a CIGIT-C epoch."""
    for make in (_autoencoder_epoch, cigit_c_epoch):
        with FlopCounterMode(display=False) as counter:
            make()()
        products = split(record_calls(make())[0])["products"]
        assert products and multiply_adds(products) == counter.get_total_flops() // 2


def test_updates_are_the_optimisers_steps(cigit_c_epoch):
    """A CIGIT-C batch steps three optimisers (encoders, generators, discriminators): the epoch's updates are three a
    batch, each over exactly its optimiser's parameters."""
    calls, _ = record_calls(cigit_c_epoch())
    updates = split(calls)["updates"]
    assert len(updates) == 3 * cigit_c_epoch.n_batches
    assert all(u.op in UPDATES for u in updates)
    shapes = [[tuple(p.shape) for g in opt.param_groups for p in g["params"]] for opt in cigit_c_epoch.opts]
    assert [[spec.shape for spec in u.args[0]] for u in updates] == shapes * cigit_c_epoch.n_batches


def test_replay_makes_the_recorded_calls_in_order(cigit_c_epoch):
    """Replaying the recording makes the same calls (op, operand shapes, strides, dtypes, scalars), in the same order:
    none dropped, none added, none re-laid out."""
    calls, _ = record_calls(cigit_c_epoch())
    again, _ = record_calls(replay(calls))
    assert [c.key for c in again] == [c.key for c in calls]
    assert len({c.key for c in calls}) < len(calls)  # signatures repeat across batches: their operands are shared


def test_tensor_spec_keeps_layout():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(5, 7)
    for t in (base, base.T, base[:, 1:4], torch.empty(0, 3), base.T[::2]):
        made = TensorSpec.of(t).make(gen)
        assert made.shape == t.shape and made.stride() == t.stride() and made.dtype == t.dtype
        assert made.numel() == 0 or (0 <= made.min() and made.max() < 1)
    assert TensorSpec.of(base.half()).make(gen).dtype == torch.float16


def _tensor_specs(tree) -> int:
    if isinstance(tree, TensorSpec):
        return 1
    return sum(_tensor_specs(t) for t in tree) if isinstance(tree, (list, tuple)) else 0


def test_replay_makes_its_operands_once_per_signature_before_it_runs(cigit_c_epoch, monkeypatch):
    """Operands are made when the replay is built, one set per call signature, and none while it runs (what a timer
    around it would otherwise measure)."""
    calls, _ = record_calls(cigit_c_epoch())
    made = []
    make = TensorSpec.make
    monkeypatch.setattr(TensorSpec, "make", lambda self, generator: made.append(self) or make(self, generator))
    run = replay(calls)
    signatures = {c.key: c for c in calls}.values()
    assert len(made) == sum(_tensor_specs((c.args, [v for _, v in c.kwargs])) for c in signatures)
    built = len(made)
    run()
    assert len(made) == built


def test_multiply_adds_of_each_product_op():
    """mm and addmm: n*k*m; bmm and baddbmm: batch*n*k*m (bias adds and scalings not counted)."""
    a, b, bias = torch.rand(3, 4), torch.rand(4, 5), torch.rand(5)
    ba, bb, bbias = torch.rand(2, 3, 4), torch.rand(2, 4, 5), torch.rand(2, 3, 5)
    for fn, expected in ((lambda: torch.mm(a, b), 60), (lambda: torch.addmm(bias, a, b), 60),
                         (lambda: torch.bmm(ba, bb), 120), (lambda: torch.baddbmm(bbias, ba, bb), 120)):
        calls, _ = record_calls(fn)
        assert len(calls) == 1 and multiply_adds(calls) == expected
