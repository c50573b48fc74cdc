"""CIGIT-C: the pieces (fusion, losses, noise) and the estimator on small synthetic data."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmclust import DataError
from mmclust.data import incomplete, make_multiview_blobs
from mmclust.methods.cigit_c import (CIGITC, _device_views, _epoch_batches, conditional_noise, discriminator_loss,
                                      encoder_loss, fuse_codes, generator_loss)
from mmclust.methods.nets import minibatches
from mmclust.metrics import acc

SMALL = dict(latent_dim=8, image_hidden=(32,), text_hidden=(16,), generator12_hidden=(32,), generator21_hidden=(32,),
             discriminator1_hidden=16, discriminator2_hidden=16, noise_dim=12, batch_size=64, max_epochs=4,
             pretrain_epochs=10, gan_pretrain_epochs=2, kmeans_n_init=3, device="cpu")


@pytest.fixture(scope="module")
def data():
    return incomplete(make_multiview_blobs(240, 3, dims={"image": 20, "text": 12}, view_noise={"text": 0.3}, seed=2), 0.4, seed=0)


def _codes(seed, n=12, d=4):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 2, generator=g) < 0.7
    masks[~masks.any(1), 0] = True
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(4)], masks[:, 0], masks[:, 1]


@given(st.integers(0, 1000), st.floats(0.05, 0.95), st.floats(0.0, 2.0), st.floats(0.0, 2.0))
def test_fusion_of_complete_samples_keeps_real_codes(seed, beta, eta_i, eta_t):
    (zi, zt, fi, ft), hi, ht = _codes(seed)
    fused = fuse_codes(zi, zt, hi, ht, fi, ft, beta, eta_i, eta_t)
    both = hi & ht
    expected = ((1 - beta) * zi + beta * zt + eta_i * fi + eta_t * ft) / (1 + eta_i + eta_t)  # eq. (1) + eq. (9)
    torch.testing.assert_close(fused[both], expected[both])
    # without generated codes a complete sample is exactly eq. (1)
    torch.testing.assert_close(fuse_codes(zi, zt, hi, ht, beta=beta)[both], ((1 - beta) * zi + beta * zt)[both])
    # a generated code stands in only where the real one is missing
    img_only = hi & ~ht
    torch.testing.assert_close(fused[img_only], (((1 - beta) * zi + (beta + eta_t) * ft) / (1 + eta_t))[img_only])


def test_fusion_ignores_content_of_missing_rows():
    (zi, zt, fi, ft), hi, ht = _codes(0)
    zi2, zt2 = zi.clone(), zt.clone()
    zi2[~hi], zt2[~ht] = float("nan"), 1e30
    fi2, ft2 = fi.clone(), ft.clone()
    fi2[~ht], ft2[~hi] = float("nan"), float("nan")  # generated codes exist only where their source is present
    torch.testing.assert_close(fuse_codes(zi2, zt2, hi, ht, fi2, ft2), fuse_codes(zi, zt, hi, ht, fi, ft))


def test_losses_and_noise():
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(10, 3, generator=g), 1)
    p = q.clone()
    assert encoder_loss(p, q, p, q, p, q).abs() < 1e-6  # KL(P||Q) = 0 when targets equal assignments
    assert encoder_loss(p.roll(1, 1), q, p, q, p, q, alpha=2) > 0
    logits = torch.zeros(5)
    assert generator_loss(logits, torch.ones(3, 2), torch.ones(3, 2)) == pytest.approx(np.log(2), abs=1e-6)
    assert generator_loss(logits, torch.zeros(3, 2), torch.ones(3, 2), similarity_weight=2.0) == pytest.approx(np.log(2) + 4, abs=1e-5)
    assert discriminator_loss(torch.full((4,), 10.0), torch.full((4,), -10.0)) < 1e-3
    noise = conditional_noise(q, 8, g)
    assert noise.shape == (10, 8) and torch.equal(noise[:, 5:].argmax(1), q.argmax(1)) and noise[:, 5:].sum(1).eq(1).all()
    with pytest.raises(DataError, match="noise_dim"):
        conditional_noise(q, 3, g)


def test_fit_outputs_and_repeatable(data):
    a = CIGITC(random_state=7, **SMALL).fit(data)
    b = CIGITC(random_state=7, **SMALL).fit(data)
    assert a.labels_.shape == (data.n_samples,) and set(a.labels_) <= set(range(3))
    np.testing.assert_allclose(a.fused_assignment_.sum(1), 1.0, rtol=1e-5)
    assert np.isfinite(a.fused_codes_).all() and a.fused_codes_.shape == (data.n_samples, 8)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_ and len(a.history_) == 4
    assert all(np.isfinite(v) for row in a.history_ for v in row.values())


def test_generated_codes_finite_with_right_shape(data):
    m = CIGITC(random_state=0, **SMALL).fit(data)
    g = torch.Generator().manual_seed(0)
    x_img, x_txt, rows = _device_views(data, "cpu")
    with torch.no_grad():
        m.nets_.eval()
        zi, zt = m._encode(x_img, x_txt, rows)
        fi, ft = m._fakes(zi, zt, rows, g)
    assert fi.shape == zi.shape == ft.shape == (data.n_samples, 8)
    assert torch.isfinite(fi).all() and torch.isfinite(ft).all()


def test_missing_rows_are_never_read(data):
    """NaN in every missing row gives finite losses and the same result as zeros."""
    views_nan = {v: np.where(data.present[v][:, None], x, np.nan) for v, x in data.views.items()}
    views_zero = {v: np.where(data.present[v][:, None], x, 0.0) for v, x in data.views.items()}
    a = CIGITC(random_state=3, **SMALL).fit(data.replace(views=views_nan))
    b = CIGITC(random_state=3, **SMALL).fit(data.replace(views=views_zero))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_
    assert all(np.isfinite(v) for row in a.history_ for v in row.values())


def test_label_blind(data):
    perm = np.random.default_rng(0).permutation(3)
    relabelled = data.replace(labels=perm[data.labels])
    a = CIGITC(random_state=5, **SMALL).fit(data)
    b = CIGITC(random_state=5, **SMALL).fit(relabelled)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_


def test_missing_rate_edges():
    base = make_multiview_blobs(120, 3, dims={"image": 10, "text": 6}, seed=1)
    CIGITC(random_state=0, **SMALL).fit(incomplete(base, 0.0, 0))  # complete data works
    with pytest.raises(DataError, match="complete image-text pairs"):
        CIGITC(random_state=0, **SMALL).fit(incomplete(base, 1.0, 0))
    m = CIGITC(random_state=0, use_gan=False, **SMALL).fit(incomplete(base, 1.0, 0))  # no GAN: allowed
    assert m.labels_.shape == (120,)


@pytest.mark.parametrize("change,msg", [
    (dict(views_only="image"), "exactly two views|at least 2 views"),
    (dict(beta=1.5), "beta must be in"),
    (dict(n_clusters=500), "exceeds"),
    (dict(noise_dim=2), "noise_dim"),
])
def test_bad_settings(data, change, msg):
    params = {**SMALL}
    ds = data
    if "views_only" in change:
        ds = data.replace(views={"image": data.views["image"]}, present=None)
    else:
        params.update(change)
    with pytest.raises(DataError, match=msg):
        CIGITC(random_state=0, **params).fit(ds)


def test_clearly_beats_chance_on_synthetic():
    """Measured with these tiny networks (15 epochs, seeds 0-3): ACC 0.57, 0.70, 0.70, 0.60; shuffled labels
    score about 0.27 (4 balanced clusters, best matching). k-means on the mean-filled views reaches 0.80
    on this easy data, so the test asks only for clear learning, not for beating k-means."""
    ds = incomplete(make_multiview_blobs(400, 4, dims={"image": 24, "text": 12}, view_noise={"text": 1.0}, seed=4), 0.3, 0)
    m = CIGITC(random_state=0, **{**SMALL, "max_epochs": 15, "pretrain_epochs": 30, "gan_pretrain_epochs": 5}).fit(ds)
    score = acc(ds.labels, m.labels_)
    shuffled = acc(ds.labels, np.random.default_rng(0).permutation(m.labels_))
    assert shuffled < 0.35 and score > 0.5, (score, shuffled)


def test_generator_is_rewarded_for_fooling_the_discriminator():
    """Eq. (5), non-saturating: fakes the discriminator scores as real cost the generator less (a flipped
    adversarial target would reward looking fake)."""
    none = torch.zeros(0, 4)
    fooled = generator_loss(torch.full((8,), 3.0), none, none)
    caught = generator_loss(torch.full((8,), -3.0), none, none)
    assert float(fooled) < float(caught)
    assert float(fooled) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-3.0))), abs=1e-6)


def test_encoder_loss_adds_the_fused_kl_with_weight_alpha_by_hand():
    """Eq. (4): KL(P1||Q1) + KL(P2||Q2) + alpha KL(P3||Q3), every term added (a sign flip fails)."""
    p = torch.tensor([[0.7, 0.3]], dtype=torch.float64)
    q = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    kl = 0.7 * np.log(1.4) + 0.3 * np.log(0.6)
    zero = encoder_loss(p, p, p, p, p, q, alpha=0.0)
    assert float(zero) == pytest.approx(0.0, abs=1e-12)
    assert float(encoder_loss(p, p, p, p, p, q, alpha=2.0)) == pytest.approx(2.0 * kl, abs=1e-12)
    assert float(encoder_loss(p, q, p, q, p, q, alpha=1.0)) == pytest.approx(3.0 * kl, abs=1e-12)


@given(seed=st.integers(0, 2**16), n=st.integers(1, 40), batch_size=st.integers(1, 16))
def test_batch_rows_equal_mask_indexing(seed, n, batch_size):
    """The host-built index lists select exactly what the boolean masks select, in the same order (so a step that
    gathers by them computes what mask indexing computed), and the epoch's batches are nets.minibatches' draw."""
    rng = np.random.default_rng(seed)
    has_img, has_txt = rng.random(n) < 0.6, rng.random(n) < 0.6
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    batches = _epoch_batches(n, batch_size, g1, has_img, has_txt, "cpu")
    reference = minibatches(n, batch_size, g2, "cpu")
    assert len(batches) == len(reference) and torch.equal(g1.get_state(), g2.get_state())
    hi_all, ht_all = torch.as_tensor(has_img), torch.as_tensor(has_txt)
    rank_img, rank_txt = torch.cumsum(hi_all.long(), 0) - 1, torch.cumsum(ht_all.long(), 0) - 1
    for (idx, rows, pos_img, pos_txt), ref in zip(batches, reference):
        hi, ht = hi_all[ref], ht_all[ref]
        assert torch.equal(idx, ref) and rows.n == ref.numel()
        assert torch.equal(rows.has_img, hi) and torch.equal(rows.has_txt, ht)
        assert torch.equal(rows.img, hi.nonzero().squeeze(1)) and torch.equal(rows.txt, ht.nonzero().squeeze(1))
        assert torch.equal(rows.both, (hi & ht).nonzero().squeeze(1))
        assert torch.equal(rows.src_img, ref[hi]) and torch.equal(rows.src_txt, ref[ht])
        assert (rows.n_img, rows.n_txt) == (int(hi.sum()), int(ht.sum()))
        assert torch.equal(pos_img, rank_img[ref][hi]) and torch.equal(pos_txt, rank_txt[ref][ht])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_training_step_issues_no_host_sync(data):
    """A CIGIT-C training step on CUDA never waits on the device (sync debug mode turns a sync into an error)."""
    m = CIGITC(random_state=0, **{**SMALL, "device": "cuda", "max_epochs": 0, "pretrain_epochs": 0}).fit(data)
    nets = m.nets_
    x_img, x_txt, rows = _device_views(data, "cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        nets.eval()
        targets = [q.pow(2) / q.pow(2).sum(1, keepdim=True) for q in m._assignments(x_img, x_txt, rows, gen)]
    present = [np.asarray(data.present[v], bool) for v in data.views]
    batches = _epoch_batches(data.n_samples, 64, gen, *present, "cuda")
    opts = m._optimizers()  # the fused optimisers a fit uses
    nets.train()
    m._step(batches[0], x_img, x_txt, targets, gen, *opts)  # first step: lazy optimizer state allocation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = m._step(batches[1], x_img, x_txt, targets, gen, *opts)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert set(out) == {"encoder", "generator", "discriminator"}


class _Hold:
    """An optimiser stand-in: exposes the real one's parameters and leaves them unchanged on ``step``."""

    def __init__(self, opt):
        self.param_groups = opt.param_groups

    def step(self):
        pass


def test_gan_step_gradients_are_each_players_own_loss(data):
    """The generators get d eq.(7) / d G and the discriminators d eq.(8) / d D, both from the networks before either
    update, exactly what two separate backward passes give (the step's shared forward of the fakes changes no
    gradient), and neither loss leaks into the other player's gradients."""
    model = CIGITC(**{**SMALL, "max_epochs": 1}, random_state=0).fit(data)
    nets = model.nets_.double()  # float64: the two computations may only differ by rounding
    x_img, x_txt, rows = _device_views(data, "cpu")
    x_img, x_txt = x_img.double(), x_txt.double()
    present = [np.asarray(data.present[v], bool) for v in data.views]
    batch = _epoch_batches(data.n_samples, 64, torch.Generator().manual_seed(3), *present, "cpu")[0][1]
    nets.train()
    _, opt_gen, opt_dis = model._optimizers()
    gen_params = [p for g in opt_gen.param_groups for p in g["params"]]
    dis_params = [p for g in opt_dis.param_groups for p in g["params"]]

    # reference: the sequential reading of Algorithm 1 steps 4-5, written out with two backward passes
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        z_img, z_txt = model._encode(x_img, x_txt, batch)
    fake_img, fake_txt = model._fakes(z_img, z_txt, batch, g)
    hi, ht, both = batch.img, batch.txt, batch.both
    from mmclust import ops

    q_ft = ops.student_t_assignment(fake_txt[hi], nets.centers[1].detach())
    q_fi = ops.student_t_assignment(fake_img[ht], nets.centers[0].detach())
    g_loss = (generator_loss(nets.d1(fake_txt[hi], q_ft), fake_txt[both], z_txt[both], model.similarity_weight)
              + generator_loss(nets.d2(fake_img[ht], q_fi), fake_img[both], z_img[both], model.similarity_weight))
    want_gen = torch.autograd.grad(g_loss, gen_params)
    q_rt = ops.student_t_assignment(z_txt[ht], nets.centers[1]).detach()
    q_ri = ops.student_t_assignment(z_img[hi], nets.centers[0]).detach()
    d_loss = (discriminator_loss(nets.d1(z_txt[ht], q_rt), nets.d1(fake_txt[hi].detach(), q_ft.detach()))
              + discriminator_loss(nets.d2(z_img[hi], q_ri), nets.d2(fake_img[ht].detach(), q_fi.detach())))
    want_dis = torch.autograd.grad(d_loss, dis_params)

    for p in nets.parameters():
        p.grad = None
    out = model._gan_step(batch, x_img, x_txt, torch.Generator().manual_seed(7), _Hold(opt_gen), _Hold(opt_dis))
    torch.testing.assert_close(out["generator"], g_loss.detach())
    torch.testing.assert_close(out["discriminator"], d_loss.detach())
    for p, want in zip(gen_params + dis_params, want_gen + want_dis):
        torch.testing.assert_close(p.grad, want, rtol=1e-9, atol=1e-12)
    others = [p for p in nets.parameters() if all(p is not q for q in gen_params + dis_params)]
    assert all(p.grad is None for p in others)  # encoders and centroids untouched by the GAN step


def _sequential_gan_step(model, rows, x_img, x_txt, gen, opt_gen, opt_dis):
    """Algorithm 1 steps 4-5 as two sequential updates (the code before the shared forward): the generators' loss
    backward and step, then the discriminators' loss on the detached fakes, backward and step."""
    from mmclust import ops

    nets = model.nets_
    hi, ht, both = rows.img, rows.txt, rows.both
    with torch.no_grad():
        z_img, z_txt = model._encode(x_img, x_txt, rows)
        q_real_txt = ops.student_t_assignment(z_txt[ht], nets.centers[1])
        q_real_img = ops.student_t_assignment(z_img[hi], nets.centers[0])
    fake_img, fake_txt = model._fakes(z_img, z_txt, rows, gen)
    q_ft = ops.student_t_assignment(fake_txt[hi], nets.centers[1].detach())
    q_fi = ops.student_t_assignment(fake_img[ht], nets.centers[0].detach())
    g_loss = (generator_loss(nets.d1(fake_txt[hi], q_ft), fake_txt[both], z_txt[both], model.similarity_weight)
              + generator_loss(nets.d2(fake_img[ht], q_fi), fake_img[both], z_img[both], model.similarity_weight))
    opt_gen.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_gen.step()
    d_loss = (discriminator_loss(nets.d1(z_txt[ht], q_real_txt), nets.d1(fake_txt[hi].detach(), q_ft.detach()))
              + discriminator_loss(nets.d2(z_img[hi], q_real_img), nets.d2(fake_img[ht].detach(), q_fi.detach())))
    opt_dis.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_dis.step()
    return {"generator": g_loss.detach(), "discriminator": d_loss.detach()}


def test_gan_steps_update_both_players_as_the_sequential_steps_do(data):
    """With the real optimisers, over consecutive steps: the parameters after each GAN step are those of the sequential
    reading (generators' gradient and update, then the discriminators' on the same fakes). Guards what the gradient
    test above cannot see with optimisers that never step: each update happens, no gradient is taken from a network
    already updated in place (fused Adam does not bump version counters, so autograd would not object), and gradients
    are replaced each step, never accumulated over steps."""
    import copy

    model = CIGITC(**{**SMALL, "max_epochs": 0}, random_state=0).fit(data)
    model.nets_.double()
    ref = copy.deepcopy(model)
    x_img, x_txt, rows = _device_views(data, "cpu")
    x_img, x_txt = x_img.double(), x_txt.double()
    present = [np.asarray(data.present[v], bool) for v in data.views]
    batches = _epoch_batches(data.n_samples, 64, torch.Generator().manual_seed(3), *present, "cpu")[:3]
    _, opt_gen, opt_dis = model._optimizers()
    _, ref_gen, ref_dis = ref._optimizers()
    model.nets_.train()
    ref.nets_.train()
    g, g_ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    names = [name for name, _ in model.nets_.named_parameters()]
    for _, batch, _, _ in batches:
        before = [p.detach().clone() for p in model.nets_.parameters()]
        out = model._gan_step(batch, x_img, x_txt, g, opt_gen, opt_dis)
        want = _sequential_gan_step(ref, batch, x_img, x_txt, g_ref, ref_gen, ref_dis)
        for key in ("generator", "discriminator"):
            torch.testing.assert_close(out[key], want[key], rtol=1e-10, atol=1e-12)
        moved = set()
        for name, p, q, p0 in zip(names, model.nets_.parameters(), ref.nets_.parameters(), before):
            # tolerance: a bias before BatchNorm has a rounding-noise gradient, which Adam's step scales up to ~1e-11
            torch.testing.assert_close(p, q, rtol=1e-7, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")
            if not torch.equal(p, p0):
                moved.add(name.split(".")[0])
        assert moved == {"g12", "g21", "d1", "d2"}  # both players step; encoders and centroids do not


def test_set_gradients_keeps_each_parameters_layout():
    """A parameter used transposed gets its gradient in its own layout: the fused optimiser reads gradients in memory
    order, so a transposed gradient would move every weight by the wrong entry's update."""
    from mmclust.methods.cigit_c import _set_gradients
    from mmclust.methods.nets import fused_adam

    w = torch.nn.Parameter(torch.zeros(3, 4))
    other = torch.nn.Parameter(torch.ones(4, 3))
    c = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    opt = fused_adam([w], lr=1.0)
    _set_gradients(opt, (w.t() * c * other).sum())
    assert w.grad.stride() == w.stride()
    assert other.grad is None  # outside the optimiser: untouched
    opt.step()
    torch.testing.assert_close(w.detach(), -torch.sign(c.t()))  # Adam's first step: -lr * sign(grad)


def test_training_batches_take_the_fused_kernels_and_agree_with_cdist(data, monkeypatch, cpp_compiler):
    """The discriminators' minibatch layer on the CPU: SMALL's batches are large enough for the compiled kernels
    (so the repeatability test above exercises them), and a fit through them follows the cdist fit to float32
    rounding (the losses, not bit for bit). A wrong fused gradient changes the discriminators' training and fails here,
    which the kernel-level tests in test_nets.py alone would not show for the training path."""
    from mmclust.methods import nets

    monkeypatch.delenv("MMCLUST_COMPILE", raising=False)  # this test is about the fused path, even in a session run without it
    taken = {True: 0, False: 0}
    forward = nets._L1Closeness.forward

    def counting(ctx, m):
        out = forward(ctx, m)
        taken[ctx.fused] += 1
        return out

    monkeypatch.setattr(nets._L1Closeness, "forward", staticmethod(counting))
    params = {**SMALL, "max_epochs": 2}
    fused = CIGITC(random_state=5, **params).fit(data)
    assert taken[True] > 0 and nets._FUSED.get("kernels") is not None, taken
    monkeypatch.setenv("MMCLUST_COMPILE", "0")
    taken_before = dict(taken)
    plain = CIGITC(random_state=5, **params).fit(data)
    assert taken[True] == taken_before[True] and taken[False] > taken_before[False]
    for a, b in zip(fused.history_, plain.history_):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=2e-3, abs=1e-6), (k, a, b)
