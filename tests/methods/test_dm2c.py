"""DM2C: the losses, each player's step, the embedding, the estimator contracts, and quality on synthetic data."""

import numpy as np
import pytest
import torch

from mmclust import DataError
from mmclust.data import make_multiview_blobs, mixed_modal, train_test_split
from mmclust.methods import METHODS
from mmclust.methods.dm2c import DM2C, _frozen_forward, dm2c_losses
from mmclust.methods.nets import clip_parameters_, kmeans_centers, mlp

TINY = dict(latent_dim=8, image_hidden=(16,), text_hidden=(16,), generator_hidden=(16,), critic_hidden=8, batch_size=32,
            max_epochs=3, pretrain_epochs=5, kmeans_n_init=2, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks run fastest on one thread (and do not fight other jobs for cores); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return mixed_modal(make_multiview_blobs(120, 3, dims={"image": 10, "text": 8}, seed=0), seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    return DM2C(random_state=1, **TINY).fit(data)


def _state(modules):
    return [t.detach().clone() for m in modules for t in list(m.parameters()) + list(m.buffers())]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _batch(data):
    x_a = torch.as_tensor(data.views["image"][data.present["image"]])
    x_b = torch.as_tensor(data.views["text"][data.present["text"]])
    return x_a[:32], x_b[:32]


def _fresh(data, **changes):
    """A model after pre-training only (no adversarial epoch): the players' steps are then tested one by one."""
    return DM2C(random_state=2, **{**TINY, "max_epochs": 0, **changes}).fit(data)


# -- the pure losses and helpers ---------------------------------------------------------------------------------
def test_losses_hand_computed():
    x = torch.zeros(2, 3)
    rec = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 0.0]])  # squared norms 3 and 4
    z = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    parts = dm2c_losses(x_a=x, rec_a=rec, x_b=x, rec_b=rec * 0, z_a=z, cyc_a=2 * z, z_b=z, cyc_b=z,
                        d_real_a=torch.tensor([1.0, 3.0]), d_fake_a=torch.tensor([0.0]),
                        d_real_b=torch.tensor([0.0]), d_fake_b=torch.tensor([1.0, 1.0]), lambda_cyc=10.0, lambda_rec=2.0)
    assert parts["rec_a"].item() == pytest.approx(3.5)  # eq. (1): mean squared l2 norm
    assert parts["rec_b"].item() == 0.0
    assert parts["cyc_a"].item() == pytest.approx(1.75)  # eq. (2): mean l1 norm of z - 2z, (3 + 0.5) / 2
    assert parts["cyc_b"].item() == 0.0
    assert parts["adv_a"].item() == pytest.approx(2.0) and parts["adv_b"].item() == pytest.approx(-1.0)  # eq. (3)
    expected = 2.0 - 1.0 + 10.0 * parts["cyc_a"].item() + 2.0 * 3.5  # eq. (4)
    assert parts["total"].item() == pytest.approx(expected)
    flat = dm2c_losses(x_a=x, rec_a=rec, z_a=z, cyc_a=2 * z, elementwise=True)  # the official code's element means
    assert flat["rec_a"].item() == pytest.approx(7 / 6) and flat["cyc_a"].item() == pytest.approx(3.5 / 4)
    assert set(dm2c_losses(z_a=z, cyc_a=z)) == {"cyc_a", "total"}


def test_clip_parameters_includes_biases():
    net = mlp([4, 6, 1], final_activation=False)
    gen = torch.Generator().manual_seed(0)  # local: the global RNG's state depends on the tests run before
    with torch.no_grad():
        for p in net.parameters():
            u = torch.rand(p.shape, generator=gen) * 2.9 + 0.1  # |w| in [0.1, 3]: every tensor needs clipping
            p.copy_(torch.where(torch.rand(p.shape, generator=gen) < 0.5, -u, u))
    clip_parameters_(net, 0.05)
    params = list(net.parameters())
    assert all(p.abs().max() <= 0.05 for p in params)
    assert all((p.abs() == 0.05).any() for p in params)  # every tensor, biases too, was clipped (not re-drawn)
    with pytest.raises(ValueError, match="clip"):
        clip_parameters_(net, 0.0)


def test_kmeans_centers_new_arguments_keep_defaults():
    z = torch.as_tensor(np.random.default_rng(0).normal(size=(60, 3)), dtype=torch.float32)
    torch.testing.assert_close(kmeans_centers(z, 3, 2, 0), kmeans_centers(z, 3, 2, 0, max_iter=300, tol=1e-4), rtol=0, atol=0)
    one_step = kmeans_centers(z, 3, 1, 0, max_iter=1)
    assert one_step.shape == (3, 3) and not torch.equal(one_step, kmeans_centers(z, 3, 1, 0, max_iter=100, tol=0.0))


# -- the three players of Algorithm 1 -------------------------------------------------------------------------------
def test_critics_clipped_after_fit_biases_included(data):
    clip = 1e-3  # far below what a rate of 1e-2 moves in one step: unclipped, biases would leave the range at once
    m = DM2C(random_state=0, **{**TINY, "clip": clip, "critic_lr": 1e-2}).fit(data)
    for critic in (m.nets_.d_a, m.nets_.d_b):
        for name, p in critic.named_parameters():
            assert (p.abs() <= torch.tensor(clip, dtype=p.dtype)).all(), name
        biases = [p for name, p in critic.named_parameters() if name.endswith("bias")]
        assert any((b.abs() == torch.tensor(clip, dtype=b.dtype)).any() for b in biases)  # the biases reached the bound: clipping acted on them


def _gap(m, x_a, x_b):
    nets = m.nets_
    with torch.no_grad():
        z_a, z_b = m._codes(x_a, x_b)
        for g in nets.generators():
            g.train()
        fake_a, fake_b = _frozen_forward(nets.g_ba, z_b), _frozen_forward(nets.g_ab, z_a)
        parts = dm2c_losses(d_real_a=nets.d_a(z_a), d_fake_a=nets.d_a(fake_a), d_real_b=nets.d_b(z_b), d_fake_b=nets.d_b(fake_b))
        return (parts["adv_a"] + parts["adv_b"]).item()


def test_critic_step_raises_the_gap_with_generators_frozen(data):
    m = _fresh(data)
    x_a, x_b = _batch(data)
    opt = torch.optim.RMSprop([p for c in m.nets_.critics() for p in c.parameters()], lr=1e-3)
    before = _gap(m, x_a, x_b)
    generators = _state(m.nets_.generators())
    for _ in range(5):
        m._critic_step(x_a, x_b, opt)
    assert _gap(m, x_a, x_b) > before + 1e-4
    assert _same(generators, _state(m.nets_.generators()))


def test_generator_step_raises_critic_score_with_critics_frozen(data):
    m = _fresh(data, lambda_cyc=0.0)  # the adversarial part alone: eq. (3)'s pairing, G_BA fools D_A
    x_a, x_b = _batch(data)
    nets = m.nets_
    opt = torch.optim.RMSprop([p for g in nets.generators() for p in g.parameters()], lr=1e-3)

    def score():
        with torch.no_grad():
            z_a, z_b = m._codes(x_a, x_b)
            nets.g_ba.train()
            nets.g_ab.train()
            return nets.d_a(_frozen_forward(nets.g_ba, z_b)).mean().item(), nets.d_b(_frozen_forward(nets.g_ab, z_a)).mean().item()

    critics = _state(nets.critics())
    (a0, b0) = score()
    for _ in range(5):
        m._generator_step(x_a, x_b, opt)
    a1, b1 = score()
    assert a1 > a0 and b1 > b0, (a0, a1, b0, b1)
    assert _same(critics, _state(nets.critics()))


def test_generator_pairing_follows_eq3_not_algorithm_1s_typo(data):
    """With D_A constant (all its parameters 0) and no cycle term, G_BA gets no gradient and stays put; G_AB moves."""
    m = _fresh(data, lambda_cyc=0.0)
    nets = m.nets_
    with torch.no_grad():
        for p in nets.d_a.parameters():
            p.zero_()
    x_a, x_b = _batch(data)
    opt = torch.optim.RMSprop([p for g in nets.generators() for p in g.parameters()], lr=1e-3)
    g_ba, g_ab = [p.clone() for p in nets.g_ba.parameters()], [p.clone() for p in nets.g_ab.parameters()]
    m._generator_step(x_a, x_b, opt)
    assert all(torch.equal(a, b) for a, b in zip(g_ba, nets.g_ba.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(g_ab, nets.g_ab.parameters()))


def test_each_step_moves_only_its_own_player(data):
    """A critic step leaves generators and auto-encoders bit-identical (BatchNorm statistics too), and so on."""
    m = _fresh(data)
    nets = m.nets_
    x_a, x_b = _batch(data)
    opt_ae, opt_d, opt_g = m._optimizers()
    groups = {"ae": nets.autoencoders(), "d": nets.critics(), "g": nets.generators()}
    for player, step, opt in (("d", m._critic_step, opt_d), ("g", m._generator_step, opt_g), ("ae", m._ae_step, opt_ae)):
        before = {k: _state(v) for k, v in groups.items()}
        step(x_a, x_b, opt)
        after = {k: _state(v) for k, v in groups.items()}
        for other in groups:
            assert _same(before[other], after[other]) == (other != player), (player, other)


def test_elementwise_switch_reaches_both_losses(data):
    """Same networks, same batch: per-sample norms are element means times the row's width (eqs. 1-2)."""
    x_a, x_b = _batch(data)
    norms, means = _fresh(data), _fresh(data, elementwise=True)  # identical after pre-training
    rec_n = norms._ae_step(x_a, x_b, norms._optimizers()[0])["rec_a"].item()
    rec_m = means._ae_step(x_a, x_b, means._optimizers()[0])["rec_a"].item()
    assert rec_n == pytest.approx(rec_m * x_a.shape[1], rel=1e-5)
    norms, means = _fresh(data), _fresh(data, elementwise=True)
    cyc_n = norms._generator_step(x_a, x_b, norms._optimizers()[2])["cyc_b"].item()
    cyc_m = means._generator_step(x_a, x_b, means._optimizers()[2])["cyc_b"].item()
    assert cyc_n == pytest.approx(cyc_m * TINY["latent_dim"], rel=1e-5)


def test_history_counts_give_n_critic_per_generator_step(data):
    m = DM2C(random_state=0, **{**TINY, "n_critic": 3, "max_epochs": 2}).fit(data)
    assert len(m.history_) == 2 and m.n_epochs_ == 2
    n_d = sum(r["critic_steps"] for r in m.history_)
    n_g = sum(r["generator_steps"] for r in m.history_)
    assert n_g > 0 and n_d == 3 * n_g and n_g == sum(r["ae_steps"] for r in m.history_)
    assert all(np.isfinite(v) for r in m.history_ for v in r.values())


# -- embedding, prediction, missing views ---------------------------------------------------------------------------
@pytest.mark.parametrize("unify", [True, False])
def test_embed_is_enc_a_for_images_and_translated_enc_b_for_texts(data, unify):
    m = DM2C(random_state=3, unify=unify, **TINY).fit(data)
    nets = m.nets_
    img, txt = data.present["image"], data.present["text"]
    with torch.no_grad():
        nets.eval()
        z_a = nets.enc_a(torch.as_tensor(data.views["image"][img]))
        z_b = nets.enc_b(torch.as_tensor(data.views["text"][txt]))
        if unify:
            z_b = nets.g_ba(z_b)
    z = m.embed(data)
    np.testing.assert_allclose(z[img], z_a.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z[txt], z_b.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(m.embedding_, z)
    np.testing.assert_array_equal(m.predict(data), m.labels_)


def test_subsets_embed_identically(fitted, data):
    idx = np.array([0, 5, 7, 50, 51, 99])  # a few rows of each modality, far smaller than a batch
    np.testing.assert_allclose(fitted.embed(data.subset(idx)), fitted.embed(data)[idx], rtol=1e-5, atol=1e-6)
    one_modality = np.flatnonzero(data.present["text"])[:1]  # a single text row: BatchNorm must be in eval mode
    np.testing.assert_allclose(fitted.embed(data.subset(one_modality)), fitted.embed(data)[one_modality], rtol=1e-5, atol=1e-6)


def test_nan_in_absent_views_is_never_read(data):
    views_nan = {v: np.where(data.present[v][:, None], x, np.nan) for v, x in data.views.items()}
    views_zero = {v: np.where(data.present[v][:, None], x, 0.0) for v, x in data.views.items()}
    a = DM2C(random_state=4, **TINY).fit(data.replace(views=views_nan))
    b = DM2C(random_state=4, **TINY).fit(data.replace(views=views_zero))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_
    assert all(np.isfinite(v) for row in a.history_ + a.pretrain_history_ for v in row.values())
    assert np.isfinite(a.embedding_).all()


def test_test_rows_never_change_the_fit():
    ds = mixed_modal(make_multiview_blobs(150, 3, dims={"image": 10, "text": 8}, seed=5), seed=1)
    train, test = train_test_split(ds, test_size=1 / 3, seed=0)
    m = DM2C(random_state=0, **TINY).fit(train)
    labels, centers = m.labels_.copy(), m.cluster_centers_.copy()
    pred = m.predict(test)
    perturbed = test.replace(views={v: x + np.float32(5.0) for v, x in test.views.items()})
    m.predict(perturbed)
    np.testing.assert_array_equal(m.labels_, labels)
    np.testing.assert_array_equal(m.cluster_centers_, centers)
    np.testing.assert_array_equal(m.predict(train), labels)  # predict is fit's own assignment on the fitting rows
    np.testing.assert_array_equal(m.predict(test), pred)
    refit = DM2C(random_state=0, **TINY).fit(train)
    np.testing.assert_array_equal(refit.labels_, labels)


# -- estimator contracts --------------------------------------------------------------------------------------------
def test_repeatable_with_a_seed(data):
    a = DM2C(random_state=7, **TINY).fit(data)
    b = DM2C(random_state=7, **TINY).fit(data)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    assert a.history_ == b.history_ and a.pretrain_history_ == b.pretrain_history_
    c = DM2C(random_state=8, **TINY).fit(data)
    assert not np.array_equal(a.embedding_, c.embedding_)


def test_label_blind(data):
    shuffled = data.replace(labels=np.random.default_rng(0).permutation(data.labels))
    a = DM2C(random_state=5, **TINY).fit(data)
    b = DM2C(random_state=5, **TINY).fit(shuffled)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_


def test_registered_with_variants_and_epoch_params():
    assert METHODS["dm2c"] is DM2C
    assert set(DM2C.VARIANTS) == {"full", "no_uni", "no_adv_no_uni", "official_code"}
    params = DM2C().get_params()
    assert {"pretrain_epochs", "max_epochs"} <= set(params)
    for name in ("wiki_vgg_bow", "nuswide10k_dm2c", "wiki_roph", "wiki_sift_lda", "uci_digits", "scene15"):
        assert set(DM2C.params_for_dataset(name)) <= set(params)
    assert DM2C.params_for_dataset("nuswide10k_dm2c")["generator_hidden"] == ()


@pytest.mark.parametrize("variant", ["no_adv_no_uni", "official_code"])
def test_variants_run(data, variant):
    m = DM2C(random_state=0, **{**TINY, **DM2C.VARIANTS[variant]}).fit(data)
    assert m.labels_.shape == (data.n_samples,) and np.isfinite(m.embedding_).all()
    if variant == "no_adv_no_uni":
        assert m.history_ == [] and m.n_epochs_ == 0
    else:
        assert sum(r["critic_steps"] for r in m.history_) == sum(r["generator_steps"] for r in m.history_) // 5
        for critic in m.nets_.critics():
            assert all(p.abs().max() <= m.clip for p in critic.parameters())


@pytest.mark.parametrize("change,msg", [
    (dict(views_only="image"), "exactly two views|at least 2 views"),
    (dict(schedule="nope"), "schedule"),
    (dict(n_clusters=500), "exceeds"),
    (dict(clip=0.0), "clip"),
    (dict(n_critic=0), "n_critic"),
])
def test_bad_settings(data, change, msg):
    params = {**TINY}
    ds = data
    if "views_only" in change:
        ds = data.replace(views={"image": data.views["image"]}, present=None)
    else:
        params.update(change)
    with pytest.raises(DataError, match=msg):
        DM2C(random_state=0, **params).fit(ds)
    with pytest.raises(DataError, match="fit before"):
        DM2C().predict(data)


# -- quality on synthetic mixed-modal data ----------------------------------------------------------------------------
QUALITY = dict(latent_dim=8, image_hidden=(32,), text_hidden=(32,), generator_hidden=(16,), critic_hidden=8, batch_size=32,
               max_epochs=40, pretrain_epochs=30, generator_lr=1e-3, critic_lr=5e-4, kmeans_n_init=5, device="cpu")


def _unbalanced_mixed_modal(seed):
    """Three clusters of 100 %, 55 % and 25 % of 133 samples, each sample keeping one view, the text view on a 5x scale.

    Unequal cluster sizes are what lets unpaired distribution matching tell which text cluster is which image
    cluster (with equal sizes any permutation matches equally well); the scale gap is the real features' case
    (e.g. SIFT counts beside topic proportions), which k-means on the raw concatenation cannot undo.
    """
    full = make_multiview_blobs(400, 3, dims={"image": 20, "text": 12}, view_noise={"text": 0.3}, seed=seed)
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(full.labels == c))[: int(f * (full.labels == c).sum())]
                           for c, f in enumerate([1.0, 0.55, 0.25])])
    ds = mixed_modal(full.subset(np.sort(keep)), seed=seed)
    return ds.replace(views={"image": ds.views["image"], "text": ds.views["text"] * np.float32(5.0)})


def test_full_beats_kmeans_and_no_adversarial_no_unification():
    """Measured (ACC; seeds 0-3; full / no_adv_no_uni / k-means on the mean-filled concatenation):
    seed 0: 0.767 / 0.554 / 0.550; seed 1: 0.646 / 0.558 / 0.517; seed 2: 0.479 / 0.562 / 0.529;
    seed 3: 0.621 / 0.388 / 0.562; means 0.628 / 0.516 / 0.540, margins +0.088 over k-means and +0.112 over
    no_adv_no_uni. The claim holds on the mean, not on every seed: on seed 2 the translation pairs the text clusters
    with the wrong image clusters. The test asks for half the measured mean margins.
    """
    from mmclust.methods.baselines import KMeansBaseline
    from mmclust.metrics import acc

    scores = {"full": [], "no_adv_no_uni": [], "kmeans": []}
    for seed in range(4):
        ds = _unbalanced_mixed_modal(seed)
        for variant in ("full", "no_adv_no_uni"):
            m = DM2C(random_state=seed, **{**QUALITY, **DM2C.VARIANTS[variant]}).fit(ds)
            scores[variant].append(acc(ds.labels, m.labels_))
        scores["kmeans"].append(acc(ds.labels, KMeansBaseline(random_state=seed).fit(ds).labels_))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["full"] >= mean["kmeans"] + 0.044, scores
    assert mean["full"] >= mean["no_adv_no_uni"] + 0.056, scores
