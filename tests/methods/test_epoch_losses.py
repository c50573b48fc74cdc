"""Losses read back once per epoch (nets.EpochLosses) give the numbers a per-batch ``float(loss)`` gave."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from mmclust import ops
from mmclust.data import incomplete, make_multiview_blobs
from mmclust.methods import DivergenceError
from mmclust.methods.cigit_c import CIGITC
from mmclust.methods.dec import self_training
from mmclust.methods.nets import EpochLosses, fused_adam, minibatches, pretrain_autoencoders
from mmclust.runtime import torch_generator

from .test_cigit_c import SMALL as CIGITC_SMALL

finite32 = st.floats(-2.0**100, 2.0**100, width=32)


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), finite32), max_size=40), st.integers(0, 40))
def test_sums_equal_a_running_float_total(batches, check_at):
    losses, reference = EpochLosses(), {}
    for i, (key, value) in enumerate(batches):
        if i == check_at:
            losses.check(0)  # a mid-epoch check (self-training's target update) must not change the rounding
        t = torch.tensor(value, dtype=torch.float32)
        losses.add(key, t)
        reference[key] = reference.get(key, 0.0) + float(t)
    assert losses.pop_totals(0) == reference
    assert losses.pop_totals(1) == {}  # a new epoch starts from nothing


def test_first_non_finite_loss_in_batch_order_is_named_with_its_epoch():
    losses = EpochLosses({"generator": "generator loss"})
    for key, value in [("encoder", 1.0), ("generator", math.nan), ("encoder", math.inf)]:
        losses.add(key, torch.tensor(value))
    with pytest.raises(DivergenceError, match="^generator loss became non-finite at epoch 3$") as err:
        losses.pop_totals(3)
    assert err.value.epoch == 3


def _reference_pretrain(pairs, epochs, lr, batch_size, generator, device, corruption):
    """The loop as it was with one ``float(loss)`` per batch (the reference the device accumulation must equal), with
    the same optimiser (its own agreement with torch's reference Adam is tested in test_nets)."""
    opts = [fused_adam(list(enc.parameters()) + list(dec.parameters()), lr=lr) for enc, dec, _, _ in pairs]
    history = []
    for epoch in range(epochs):
        row = {"epoch": epoch}
        for (enc, dec, x, name), opt in zip(pairs, opts):
            total = 0.0
            batches = minibatches(x.shape[0], batch_size, generator, device)
            for idx in batches:
                inp = x[idx]
                keep = torch.rand(inp.shape, generator=generator, device=generator.device) >= corruption
                loss = F.mse_loss(dec(enc(inp * keep / (1.0 - corruption))), x[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
            row[f"{name}_reconstruction"] = total / len(batches)
        history.append(row)
    return history


def test_pretrain_autoencoders_equals_the_per_batch_reference():
    g = torch.Generator().manual_seed(0)
    xs = {"image": torch.randn(70, 6, generator=g), "text": torch.randn(70, 3, generator=g)}

    def nets(seed):
        torch.manual_seed(seed)
        return [(nn.Linear(x.shape[1], 2), nn.Linear(2, x.shape[1]), x, name) for name, x in xs.items()]

    a, b = nets(1), nets(1)
    got = pretrain_autoencoders(a, 3, 1e-2, 16, torch_generator(5), "cpu", corruption=0.2)
    want = _reference_pretrain(b, 3, 1e-2, 16, torch_generator(5), "cpu", corruption=0.2)
    assert got == want
    for (enc_a, dec_a, _, _), (enc_b, dec_b, _, _) in zip(a, b):
        for p, q in zip([*enc_a.parameters(), *dec_a.parameters()], [*enc_b.parameters(), *dec_b.parameters()]):
            assert torch.equal(p, q)


def _toy_self_training(loss_hook=lambda it, loss: loss, on_update=None, max_epochs=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g)
    enc = nn.Linear(4, 2)
    centers = nn.Parameter(torch.randn(3, 2, generator=g))
    opt = torch.optim.SGD([*enc.parameters(), centers], lr=0.1)
    seen = []

    def loss_fn(idx, p_batch, q_batch):
        loss = loss_hook(len(seen), ops.kl_divergence(p_batch, q_batch))
        seen.append(float(loss.detach()))  # the test's own host copy of each batch's loss
        return loss

    result = self_training(lambda idx: ops.student_t_assignment(enc(x[idx]), centers), ops.target_distribution, loss_fn,
                           [enc], opt, 50, 8, 3, 0.0, max_epochs, torch_generator(1), "cpu", desc="toy", on_update=on_update)
    return result, seen


def test_self_training_history_is_the_mean_of_its_batch_losses():
    result, seen = _toy_self_training()
    start = 0
    assert [row["iterations"] for row in result["history"]] == [7, 14, 21]  # 50 rows, batches of 8
    for row in result["history"]:
        chunk, start = seen[start:row["iterations"]], row["iterations"]
        total = 0.0
        for value in chunk:
            total += value
        assert row["loss"] == total / len(chunk)


def test_self_training_stops_a_divergence_before_the_next_target_refresh():
    """A NaN loss at iteration 9 (epoch 1) fails the run at epoch 1 with DivergenceError, before the target update
    at iteration 12 hands NaN assignments to a step that cannot take them (JECL's Hungarian alignment)."""
    def hungarian_like(q):
        if not torch.isfinite(q).all():
            raise ValueError("matrix contains invalid numeric entries")
        return q

    with pytest.raises(DivergenceError, match="^toy loss became non-finite at epoch 1$") as err:
        _toy_self_training(lambda it, loss: loss * math.nan if it >= 9 else loss, on_update=hungarian_like)
    assert err.value.epoch == 1


def test_cigit_c_histories_are_the_means_of_their_batch_losses():
    data = incomplete(make_multiview_blobs(240, 3, dims={"image": 20, "text": 12}, seed=2), 0.4, seed=0)
    model = CIGITC(random_state=0, **{**CIGITC_SMALL, "pretrain_epochs": 1, "gan_pretrain_epochs": 2, "max_epochs": 2})
    steps, gan_steps = [], []
    step, gan_step = model._step, model._gan_step

    def record(log, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            log.append({key: float(value) for key, value in out.items()})
            return out
        return wrapped

    model._step, model._gan_step = record(steps, step), record(gan_steps, gan_step)
    model.fit(data)
    n_batches = 4  # 240 rows in batches of 64
    warm_up = gan_steps[: 2 * n_batches]  # the main loop's GAN steps come after, inside _step

    def means(log, keys):
        rows = []
        for e in range(len(log) // n_batches):
            totals = dict.fromkeys(keys, 0.0)
            for batch in log[e * n_batches:(e + 1) * n_batches]:
                for key, value in batch.items():
                    totals[key] += value
            rows.append({f"{key}_loss": v / n_batches for key, v in totals.items()})
        return rows

    assert [{k: v for k, v in r.items() if k != "epoch"} for r in model.gan_pretrain_history_] == \
        means(warm_up, ("generator", "discriminator"))
    assert [{k: v for k, v in r.items() if k != "epoch"} for r in model.history_] == \
        means(steps, ("encoder", "generator", "discriminator"))
    assert len(steps) == 2 * n_batches and all(set(s) == {"encoder", "generator", "discriminator"} for s in steps)
