"""MCA: semantic-space selection, each loss term against its equation (value and sign), and the estimator on the
synthetic joint space (images and nouns in one space with a toy hypernym tree)."""

import math

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
import torch

from mmclust import DataError
from mmclust.data import MultiModalDataset, make_joint_space
from mmclust.methods import METHODS, KMeansBaseline
from mmclust.methods.mca import (MCA, _MCANets, hierarchy_filter, mca_losses, semantic_pseudo_labels, semantic_space,
                                 uniqueness_filter, uniqueness_scores)
from mmclust.data.wordnet import parents_of
from mmclust.metrics import acc

# k_proto below |T| (about 15 words here): with k_p >= |T| every text prototype is the mean of all words and L_pa
# is constant. A fit takes about 0.7 s on one core.
FAST = dict(gamma_r=10, k_image=10, k_proto=3, lr=1e-2, max_epochs=30, device="cpu")
SEEDS = range(4)


@pytest.fixture(scope="module")
def joint():
    return make_joint_space(seed=0)


# -- semantic space -----------------------------------------------------------------------------------
ENTITY, ANIMAL, MAMMAL, DOG, CAT, ROCK = 1, 2, 3, 4, 5, 6
TOY_PARENTS = {ANIMAL: (ENTITY,), MAMMAL: (ANIMAL,), DOG: (MAMMAL,), CAT: (MAMMAL,), ROCK: (ENTITY,)}


def test_hierarchy_filter_on_the_toy_tree():
    w_c = [ANIMAL, MAMMAL, DOG, CAT, ROCK]
    got = hierarchy_filter([DOG, CAT, DOG], w_c, TOY_PARENTS, gamma_h=1)
    assert got.tolist() == [MAMMAL, DOG, CAT]  # animal is the top level below the root; rock is on no path
    assert hierarchy_filter([DOG, CAT], w_c, TOY_PARENTS, gamma_h=0).tolist() == [ANIMAL, MAMMAL, DOG, CAT]
    assert hierarchy_filter([DOG], w_c, TOY_PARENTS, gamma_h=2).tolist() == [DOG]
    assert hierarchy_filter([DOG, CAT], [DOG, CAT, ENTITY], TOY_PARENTS, gamma_h=0).tolist() == [DOG, CAT]  # no root
    # a node two levels down on one path and one level down on another survives gamma_h = 1 (union of paths)
    assert hierarchy_filter([DOG], [MAMMAL, DOG], {**TOY_PARENTS, MAMMAL: (ANIMAL, ENTITY)}, 1).tolist() == [MAMMAL, DOG]


def test_uniqueness_filter_drops_generic_nouns_and_keeps_the_nearest():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(3, 8, generator=g, dtype=torch.float64), dim=1)
    distinct = torch.nn.functional.normalize(centres.repeat(4, 1) + 0.05 * torch.randn(12, 8, generator=g, dtype=torch.float64), dim=1)
    generic = distinct.mean(0, keepdim=True).repeat(5, 1)  # the mean of all nouns: uniqueness ~ 0
    nouns = torch.cat([distinct, generic])
    scores = uniqueness_scores(nouns)
    assert (scores[12:] < 0.05).all() and (scores[:12] > 0.05).all()
    kept = uniqueness_filter(centres, nouns, gamma_r=4, rho_u=0.05)
    assert kept.tolist() == list(range(12))  # each centre's 4 nearest are its own 4 nouns, generic ones never
    nearest = uniqueness_filter(centres, nouns, gamma_r=1, rho_u=0.05)
    assert sorted(i % 3 for i in nearest) == [0, 1, 2]  # noun i belongs to centre i % 3: one per centre
    with pytest.raises(DataError, match="rho_u"):
        uniqueness_filter(centres, nouns, gamma_r=1, rho_u=2.0)


def test_semantic_space_on_the_joint_space(joint):
    ctx = joint.context
    u = torch.nn.functional.normalize(torch.tensor(np.array(joint.views["image"])), dim=1)
    v = torch.nn.functional.normalize(torch.tensor(np.array(ctx["noun_embeddings"])), dim=1)
    parents = parents_of(ctx["hypernym_child"], ctx["hypernym_parent"])
    full = semantic_space(u, v, ctx["noun_offsets"], parents, 4, gamma_r=10, seed=0)
    flat = semantic_space(u, v, ctx["noun_offsets"], None, 4, gamma_r=10, seed=0, hierarchy=False)
    assert set(full.words) <= set(full.candidates) <= set(range(v.shape[0]))  # T within W_c within W
    np.testing.assert_array_equal(flat.words, flat.candidates)  # no hierarchy filter: T = W_c
    np.testing.assert_array_equal(flat.candidates, full.candidates)
    # noun rows: 0 object; 1 superclass, 2-11 its two classes' nouns; 12 superclass, 13-22 its classes' nouns;
    # 23-42 generic (near the mean of all nouns); 43-62 distractors (random directions, hung under the root)
    generic, top_level = set(range(23, 43)), {0, *range(43, 63)}
    assert not (set(full.candidates) & generic)  # the uniqueness filter
    assert set(full.candidates) & top_level and not (set(full.words) & top_level)  # the hierarchy filter
    assert set(range(2, 7)) & set(full.words) and set(range(18, 23)) & set(full.words)
    with pytest.raises(DataError, match="hypernym"):
        semantic_space(u, v, ctx["noun_offsets"], None, 4, gamma_r=10)


# -- the losses -----------------------------------------------------------------------------------------
def test_balance_is_lower_for_a_uniform_mean_assignment():
    uniform = torch.eye(4)
    collapsed = torch.tensor([[1.0, 0, 0, 0]]).repeat(4, 1)
    lo = mca_losses(uniform, uniform, eta=5.0)["balance"]
    hi = mca_losses(collapsed, collapsed, eta=5.0)["balance"]
    assert lo.item() == pytest.approx(-5 * math.log(4), abs=1e-6) and hi.item() == pytest.approx(0.0, abs=1e-6)
    assert lo < hi


def test_instance_alignment_matches_a_hand_oracle():
    # n = 2 images, m = 3 texts, c = 2 clusters, tau = 0.1; image 0's drawn neighbour text is 0, image 1's is 2
    q = torch.tensor([[0.9, 0.1], [0.3, 0.7]], dtype=torch.float64)
    p = torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9]], dtype=torch.float64)
    pos = torch.tensor([0, 2])
    s = [[sum(a * b for a, b in zip(qi, pj)) / 0.1 for pj in p.tolist()] for qi in q.tolist()]
    oracle = 0.5 * ((-s[0][0] + math.log(math.exp(s[0][1]) + math.exp(s[0][2])))
                    + (-s[1][2] + math.log(math.exp(s[1][0]) + math.exp(s[1][1]))))
    parts = mca_losses(q, q, p, pos, tau_ia=0.1)
    assert parts["instance"].item() == pytest.approx(oracle, abs=1e-6)
    # a text that is no image's neighbour still enters every denominator (l != j runs over all m texts)
    p2 = p.clone()
    p2[1] = torch.tensor([0.95, 0.05], dtype=torch.float64)
    assert abs(mca_losses(q, q, p2, pos, tau_ia=0.1)["instance"].item() - oracle) > 1e-3


def test_total_is_eq_8_of_its_parts():
    g = torch.Generator().manual_seed(1)
    q, qn = (torch.softmax(torch.randn(6, 3, generator=g), 1) for _ in range(2))
    p = torch.softmax(torch.randn(5, 3, generator=g), 1)
    pq, pp, pprime = (torch.softmax(torch.randn(3, 3, generator=g), 1), torch.softmax(torch.randn(3, 3, generator=g), 1),
                      torch.softmax(torch.randn(6, 3, generator=g), 1))
    parts = mca_losses(q, qn, p, torch.tensor([0, 1, 2, 3, 4, 0]), pq, pp, pprime, eta=2.0, lambda_a=0.5,
                       lambda_pa=3.0, lambda_sa=7.0)
    assert parts["image"].item() == pytest.approx((parts["consistency"] + parts["balance"]).item(), rel=1e-6)
    expected = parts["image"] + 0.5 * (parts["instance"] + 3.0 * parts["prototype"] + 7.0 * parts["semantic"])
    assert parts["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    # eq. (6): the cross-entropy of q against the one-hot argmax of p'
    ce = -torch.log(q[torch.arange(6), pprime.argmax(1)]).mean()
    assert parts["semantic"].item() == pytest.approx(ce.item(), rel=1e-6)
    dropped = mca_losses(q, qn)
    assert dropped["instance"] == 0 and dropped["prototype"] == 0 and dropped["semantic"] == 0


def _descends(term: str, measure, logits, **inputs):
    """One small gradient step on ``term`` w.r.t. the image logits must raise ``measure`` (the alignment the term asks for)."""
    logits = logits.clone().requires_grad_(True)
    q = torch.softmax(logits, 1)
    mca_losses(q, **inputs)[term].backward()
    before = measure(torch.softmax(logits.detach(), 1))
    after = measure(torch.softmax(logits.detach() - 0.1 * logits.grad, 1))
    return after > before


def test_each_term_pulls_the_right_way():
    """Sign checks: descending each term moves q toward what its equation aligns it with."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, generator=g)
    fixed = torch.softmax(torch.randn(4, 3, generator=g) * 3, 1)
    p = torch.softmax(torch.randn(5, 3, generator=g) * 3, 1)
    pos = torch.tensor([0, 1, 2, 3])
    # eq. (1): toward the neighbour's assignment; balance: toward a more even mean assignment
    assert _descends("consistency", lambda q: (q * fixed).sum(1).log().sum(), logits, q_nb=fixed)
    skewed = torch.tensor([[3.0, 0, 0]]).repeat(4, 1) + 0.1 * logits
    from mmclust.ops import entropy
    assert _descends("balance", lambda q: entropy(q.mean(0)), skewed, q_nb=fixed)
    # eq. (2): toward the drawn neighbour text's assignment
    assert _descends("instance", lambda q: (q * p[pos]).sum(1).sum(), logits, q_nb=fixed, p=p, pos_text=pos)
    # eq. (6): toward the argmax of p'
    target = fixed.argmax(1)
    assert _descends("semantic", lambda q: q[torch.arange(4), target].log().sum(), logits, q_nb=fixed, p_prime=fixed)


def test_prototype_term_pulls_matching_prototypes_together():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 3, generator=g).requires_grad_(True)
    proto_p = torch.softmax(torch.randn(3, 3, generator=g) * 3, 1)
    q = torch.softmax(torch.randn(5, 3, generator=g), 1)
    mca_losses(q, q, proto_q=torch.softmax(logits, 1), proto_p=proto_p)["prototype"].backward()
    diag = lambda lg: (torch.softmax(lg, 1) * proto_p).sum(1).sum()  # noqa: E731 - f_I(h^I_j)^T f_S(h^S_j)
    assert diag(logits.detach() - 0.1 * logits.grad) > diag(logits.detach())


def test_pseudo_labels_attention_and_heads():
    g = torch.Generator().manual_seed(4)
    p_prime = torch.softmax(torch.randn(6, 4, generator=g), 1).requires_grad_(True)
    target = semantic_pseudo_labels(p_prime)
    assert not target.requires_grad and (target.sum(1) == 1).all() and set(target.unique().tolist()) == {0.0, 1.0}
    assert (target.argmax(1) == p_prime.argmax(1)).all()
    nets = _MCANets(8, 4)
    u, v_nb = torch.randn(6, 8, generator=g), torch.randn(6, 5, 8, generator=g)
    weights = nets.attention(u, v_nb)
    np.testing.assert_allclose(weights.sum(1).detach().numpy(), 1.0, atol=1e-6)  # over the k_S = 5 neighbours
    # W^I = W^S = I: the weights are the softmax of the plain dot products u_i^T v_j
    np.testing.assert_allclose(weights.detach().numpy(), torch.softmax((v_nb * u[:, None]).sum(-1), 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(nets.q(u).sum(1).detach().numpy(), 1.0, atol=1e-6)
    # the soft target lets the gradient reach the attention; the hard one does not
    p_nb = torch.softmax(torch.randn(6, 5, 4, generator=g), -1)
    for target, reaches in (("hard", False), ("soft", True)):
        nets.zero_grad()
        q = nets.q(u)
        mca_losses(q, q.detach(), p_prime=nets.semantic_assignment(u, v_nb, p_nb),
                   semantic_target=target)["semantic"].backward()
        assert (nets.w_image.grad is not None and nets.w_image.grad.abs().sum() > 0) == reaches


# -- the estimator --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seed_sweep():
    """ACC of k-means and of MCA's variants on the joint space of each seed 0..3 (seed = data seed = fit seed)."""
    out = {}
    for seed in SEEDS:
        ds = make_joint_space(seed=seed)
        out[("kmeans", seed)] = acc(ds.labels, KMeansBaseline(n_clusters=4, random_state=seed).fit(ds).labels_)
        for variant in ("full", "image_consistency_only", "no_instance_alignment", "no_semantic_alignment"):
            est = MCA(random_state=seed, **{**FAST, **MCA.VARIANTS[variant]}).fit(ds)
            out[(variant, seed)] = acc(ds.labels, est.labels_)
            out[(variant, seed, "used")] = len(set(est.labels_.tolist()))
    return out


def _mean(sweep, key):
    return float(np.mean([sweep[(key, s)] for s in SEEDS]))


def test_mca_beats_kmeans_on_the_joint_space(seed_sweep):
    # measured: k-means 0.28, MCA 0.87 (seeds 0-3: 0.86, 1.00, 0.63, 0.99); the style nuisance misleads k-means,
    # the nouns do not
    assert _mean(seed_sweep, "full") >= _mean(seed_sweep, "kmeans") + 0.3
    assert all(seed_sweep[("full", s)] > seed_sweep[("kmeans", s)] for s in SEEDS)
    assert all(seed_sweep[("full", s, "used")] >= 0.9 * 4 for s in SEEDS)


def test_alignment_terms_carry_the_gain(seed_sweep):
    # measured: image consistency alone 0.38, without L_ia 0.62, without L_sa 0.81; full 0.87 (without L_pa 0.91:
    # on this data the prototype term costs a little; a finding, not asserted)
    full = _mean(seed_sweep, "full")
    assert full >= _mean(seed_sweep, "image_consistency_only") + 0.3
    assert full > _mean(seed_sweep, "no_instance_alignment")


def test_fit_is_repeatable_and_records_every_part(joint):
    a = MCA(random_state=5, **FAST).fit(joint)
    b = MCA(random_state=5, **FAST).fit(joint)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.history_ == b.history_ and len(a.history_) == FAST["max_epochs"]
    assert {"total_loss", "image", "consistency", "balance", "instance", "prototype", "semantic"} <= set(a.history_[0])
    np.testing.assert_allclose(a.cluster_probabilities_.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a.predict(joint), a.labels_)
    assert a.history_[-1]["total_loss"] < a.history_[0]["total_loss"]
    ablated = MCA(random_state=5, **{**FAST, **MCA.VARIANTS["image_consistency_only"]}).fit(joint)
    assert all(r["instance"] == r["prototype"] == r["semantic"] == 0 for r in ablated.history_)


def test_variants_cover_the_reference_file():
    from mmclust.repro.references import load_references

    refs = load_references("mca")
    assert {c.variant for c in refs.cells if c.method == "mca"} <= set(MCA.VARIANTS)
    assert METHODS["mca"] is MCA


def test_bad_input_is_named(joint):
    bare = MultiModalDataset(views=dict(joint.views), labels=joint.labels)
    with pytest.raises(DataError, match="noun_embeddings"):
        MCA(**FAST).fit(bare)
    with pytest.raises(DataError, match="noun_embeddings must be"):
        MCA(**FAST).fit(joint.replace(context={**joint.context, "noun_embeddings": np.ones((5, 3))}))
    with pytest.raises(DataError, match="semantic_target"):
        MCA(**{**FAST, "semantic_target": "fuzzy"}).fit(joint)
    with pytest.raises(NotFittedError, match="fit"):  # scikit-learn's error, as every method here
        MCA(**FAST).predict(joint)
    flat = joint.replace(context={k: joint.context[k] for k in ("noun_embeddings", "noun_offsets")})
    assert MCA(hierarchy_filter=False, **{**FAST, "max_epochs": 1}).fit(flat).labels_.shape == (joint.n_samples,)


@pytest.mark.parametrize("settings, named", [
    ({"k_image": 2.5}, "k_image"), ({"chunk_size": 10.0}, "chunk_size"), ({"gamma_r": True}, r"invalid settings \['gamma_r'\]"),
    ({"eta": float("nan")}, "eta"), ({"lambda_a": None}, "lambda_a"), ({"tau_pa": 0.0}, "tau_pa"),
    ({"lambda_sa": -1.0}, "lambda_sa"), ({"k_text": 1000}, "k_text=1000 exceed"), ({"k_proto": 1000}, "k_proto=1000"),
    ({"gamma_h": 50}, "kept 0 word"), ({"rho_u": 1.5}, "rho_u"),
])
def test_bad_settings_are_named(joint, settings, named):
    with pytest.raises(DataError, match=named):
        MCA(**{**FAST, "max_epochs": 1, **settings}).fit(joint)


def _context(joint, **changes):
    return joint.replace(context={**joint.context, **changes})


@pytest.mark.parametrize("change, named", [
    (lambda c: {"noun_offsets": np.zeros_like(c["noun_offsets"])}, "distinct integer"),
    (lambda c: {"noun_offsets": c["noun_offsets"] + 0.5}, "distinct integer"),
    (lambda c: {"noun_offsets": c["noun_offsets"] + 10**6}, "not in the hypernym graph"),
    (lambda c: {"hypernym_parent": c["hypernym_parent"][:-1]}, "equal length"),
    (lambda c: {"noun_embeddings": np.vstack([c["noun_embeddings"][:-1], np.zeros((1, c["noun_embeddings"].shape[1]))])},
     "all zeros"),
])
def test_bad_context_is_named(joint, change, named):
    with pytest.raises(DataError, match=named):
        MCA(**{**FAST, "max_epochs": 1}).fit(_context(joint, **change(joint.context)))


# -- equations against brute-force oracles, and fit's wiring (mutants that survived the tests above) ----------------
def test_prototype_alignment_matches_a_hand_oracle():
    # eq. (3) with ambiguity 2: row j pairs image prototype j with text prototype j against text prototypes l != j;
    # its own temperature tau_pa (not tau_ia)
    g = torch.Generator().manual_seed(8)
    pq = torch.softmax(torch.randn(3, 3, generator=g, dtype=torch.float64) * 2, 1)
    pp = torch.softmax(torch.randn(3, 3, generator=g, dtype=torch.float64) * 2, 1)
    s = [[sum(a * b for a, b in zip(hi, hs)) / 0.2 for hs in pp.tolist()] for hi in pq.tolist()]
    oracle = sum(-s[j][j] + math.log(sum(math.exp(s[j][l]) for l in range(3) if l != j)) for j in range(3)) / 3
    q = torch.softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), 1)
    got = mca_losses(q, q, proto_q=pq, proto_p=pp, tau_ia=5.0, tau_pa=0.2)["prototype"].item()
    assert got == pytest.approx(oracle, abs=1e-9)


def test_attention_matches_eq_4_with_learned_matrices():
    g = torch.Generator().manual_seed(9)
    nets = _MCANets(4, 3)
    with torch.no_grad():
        nets.w_image.copy_(torch.randn(4, 4, generator=g))
        nets.w_text.copy_(torch.randn(4, 4, generator=g))
    u, v_nb = torch.randn(2, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    p_nb = torch.softmax(torch.randn(2, 3, 3, generator=g), -1)
    wi, ws = nets.w_image.detach(), nets.w_text.detach()
    for i in range(2):
        scores = torch.stack([(wi @ u[i]) @ (ws @ v_nb[i, j]) for j in range(3)])  # (W^I u_i)^T W^S v_j
        weights = torch.softmax(scores, 0)
        np.testing.assert_allclose(nets.attention(u, v_nb)[i].detach().numpy(), weights.numpy(), rtol=1e-5)
        expected = (weights[:, None] * p_nb[i]).sum(0)
        np.testing.assert_allclose(nets.semantic_assignment(u, v_nb, p_nb)[i].detach().numpy(), expected.numpy(),
                                   rtol=1e-5)


def test_uniqueness_filter_equals_brute_force():
    # among the unique nouns first, then the gamma_r nearest (ambiguity 5), not SIC's nearest-then-intersect
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        nouns = torch.nn.functional.normalize(torch.randn(30, 5, generator=g, dtype=torch.float64), dim=1)
        centres = torch.randn(3, 5, generator=g, dtype=torch.float64)
        scores = uniqueness_scores(nouns)
        mean = nouns.mean(0)
        np.testing.assert_allclose(scores.numpy(), (1 - nouns @ mean / mean.norm()).numpy(), atol=1e-12)
        rho = float(scores.median())
        unique = [t for t in range(30) if scores[t] > rho]
        expected = set()
        for c in centres:
            cos = {t: float(c @ nouns[t] / c.norm()) for t in unique}
            expected |= set(sorted(unique, key=lambda t: -cos[t])[:4])
        assert set(uniqueness_filter(centres, nouns, 4, rho).tolist()) == expected


def test_hierarchy_filter_starts_from_the_nearest_noun_in_w_c():
    # images sit nearer a generic noun (filtered out by uniqueness) than their class noun: the hierarchy walk must
    # start from the nearest noun *in W_c* (dog, cat), not the nearest overall (generic, under the root)
    e = torch.eye(6, dtype=torch.float64)
    unit = torch.nn.functional.normalize
    nouns = torch.cat([unit(e[2] + e[3] + e[4], dim=0)[None], e[3][None], unit(e[0] + e[1], dim=0)[None], e[0][None],
                       e[1][None], e[4][None], e[5].repeat(20, 1)])  # entity animal mammal dog cat rock, generic x20
    offsets = np.array([ENTITY, ANIMAL, MAMMAL, DOG, CAT, ROCK] + list(range(7, 27)))
    parents = {**TOY_PARENTS, **{o: (ENTITY,) for o in range(7, 27)}}
    g = torch.Generator().manual_seed(10)
    images = unit(torch.cat([0.6 * e[0] + 0.8 * e[5] + 0.02 * torch.randn(20, 6, generator=g, dtype=torch.float64),
                             0.6 * e[1] + 0.8 * e[5] + 0.02 * torch.randn(20, 6, generator=g, dtype=torch.float64)]), dim=1)
    assert (uniqueness_scores(nouns)[6:] < 0.05).all()  # the generic nouns are filtered out
    space = semantic_space(images, nouns, offsets, parents, 2, gamma_r=6, seed=0)
    assert offsets[space.candidates].tolist() == [ENTITY, ANIMAL, MAMMAL, DOG, CAT, ROCK]
    assert offsets[space.words].tolist() == [MAMMAL, DOG, CAT]


def test_draw_takes_one_of_each_rows_neighbours_uniformly():
    nb = torch.arange(40).reshape(8, 5)
    idx = torch.tensor([3, 0, 7]).repeat(400)
    got = MCA()._draw(nb, idx, torch.Generator().manual_seed(0))
    assert ((got // 5) == idx).all()  # from the row's own neighbour list
    assert torch.bincount(got % 5, minlength=5).min() > 0.15 * idx.numel()  # every column, about evenly (0.2 each)


def test_batch_losses_wire_each_term_to_its_inputs():
    """``_batch_losses`` equals eq. (8) built by hand: q of the batch, q of each drawn image neighbour, p of all of T,
    the drawn neighbour word, f_I / f_S of the prototypes, and p' from the image's k_S neighbour words."""
    g = torch.Generator().manual_seed(11)
    unit = torch.nn.functional.normalize
    n, m, d, c = 7, 6, 4, 3
    u, v = unit(torch.randn(n, d, generator=g), dim=1), unit(torch.randn(m, d, generator=g), dim=1)
    nb_image = torch.stack([torch.randperm(n, generator=g)[:3] for _ in range(n)])
    nb_text = torch.stack([torch.randperm(m, generator=g)[:2] for _ in range(n)])
    protos = (torch.randn(c, d, generator=g), torch.randn(c, d, generator=g))
    idx = torch.tensor([5, 1, 2, 6])
    settings = dict(eta=2.0, tau_ia=0.3, tau_pa=0.7, lambda_a=0.5, lambda_pa=2.0, lambda_sa=3.0)
    est = MCA(n_clusters=c, **settings)
    est.nets_ = nets = _MCANets(d, c)
    gen = torch.Generator().manual_seed(3)
    replay = torch.Generator().manual_seed(3)
    got = est._batch_losses(u, v, idx, nb_image, nb_text, protos, gen)
    image_nb, text_nb = est._draw(nb_image, idx, replay), est._draw(nb_text, idx, replay)
    p = nets.p(v)
    weights = torch.softmax((u[idx][:, None, :] * v[nb_text[idx]]).sum(-1), 1)  # W^I = W^S = I
    p_prime = (weights[:, :, None] * p[nb_text[idx]]).sum(1)
    want = mca_losses(nets.q(u[idx]), nets.q(u[image_nb]), p, text_nb, nets.q(protos[0]), nets.p(protos[1]), p_prime,
                      **settings)
    for key in want:
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-6), key


def test_fit_searches_the_paper_neighbourhoods(joint, monkeypatch):
    """Which k-NN searches fit runs: k_I image neighbours (self excluded), k_S words of T per image, the nearest
    noun of W_c per image (hierarchy filter), and per epoch the word of T nearest each image prototype and its k_p
    neighbours in T (prototypes recomputed every epoch)."""
    from mmclust import ops

    calls = []
    real = ops.topk_neighbours

    def spy(a, b, k, chunk_size=4096, exclude_self=False):
        out = real(a, b, k, chunk_size, exclude_self=exclude_self)
        calls.append((a.clone(), b.clone(), k, exclude_self, out))
        return out

    monkeypatch.setattr(ops, "topk_neighbours", spy)
    import mmclust.methods.mca as mca_module

    kmeans_calls, proto_calls = [], []
    real_kmeans, real_protos = mca_module.kmeans_centers, ops.soft_prototypes

    def kmeans_spy(z, k, *args, **kwargs):
        kmeans_calls.append((z.clone(), k))
        return real_kmeans(z, k, *args, **kwargs)

    def protos_spy(q, x):
        out = real_protos(q, x)
        proto_calls.append((q.clone(), x.clone(), out))
        return out

    monkeypatch.setattr(mca_module, "kmeans_centers", kmeans_spy)
    monkeypatch.setattr(ops, "soft_prototypes", protos_spy)
    est = MCA(random_state=0, **{**FAST, "max_epochs": 3, "k_text": 4}).fit(joint)
    unit = torch.nn.functional.normalize
    u = unit(torch.tensor(np.asarray(joint.views["image"]), dtype=torch.float32), dim=1)
    nouns = unit(torch.tensor(np.asarray(joint.context["noun_embeddings"]), dtype=torch.float32), dim=1)
    v, cand = nouns[est.semantic_space_.words], nouns[est.semantic_space_.candidates]

    def same(x, y):
        return x.shape == y.shape and torch.allclose(x, y)

    image_calls = [c for c in calls if c[3]]
    assert len(image_calls) == 1 and same(image_calls[0][0], u) and same(image_calls[0][1], u)
    assert image_calls[0][2] == FAST["k_image"]
    assert [c[2] for c in calls if same(c[0], u) and same(c[1], v) and not c[3]] == [4]  # k_S over T
    assert [c[2] for c in calls if same(c[0], u) and same(c[1], cand)] == [1]  # nearest noun in W_c
    proto = [c for c in calls if c[0].shape[0] == 4 and same(c[1], v)]
    assert [c[2] for c in proto] == [1, FAST["k_proto"]] * 3  # per epoch: nearest word, then its k_p neighbours
    for nearest, around in zip(proto[0::2], proto[1::2]):
        assert same(around[0], v[nearest[4].squeeze(1)])  # the k_p search starts from the nearest word itself
    assert not same(proto[0][0], proto[4][0])  # h^I moves with q: recomputed each epoch
    # h^I: soft means of the images under the current q (not hard means), the rows the nearest-word search starts from
    assert len(proto_calls) == 3
    for (q, x, out), nearest in zip(proto_calls, proto[0::2]):
        assert same(x, u) and same(out, nearest[0]) and torch.allclose(q.sum(1), torch.ones(len(q)))
        assert ((q > 1e-3) & (q < 1 - 1e-3)).any()
    # the uniqueness filter: k-means of the images into c centres, then gamma_r nouns per centre
    assert len(kmeans_calls) == 1 and same(kmeans_calls[0][0], u) and kmeans_calls[0][1] == 4
    assert [c[2] for c in calls if c[0].shape[0] == 4 and c[1].shape[0] > v.shape[0]] == [FAST["gamma_r"]]


def test_attention_weights_learn_only_under_the_soft_target(joint):
    # eq. (5)'s argmax: W^I, W^S get no gradient and stay at I (nor does weight decay shrink them); CE(q, p') trains them
    hard = MCA(random_state=0, **{**FAST, "max_epochs": 2}).fit(joint)
    soft = MCA(random_state=0, **{**FAST, "max_epochs": 2, **MCA.VARIANTS["soft_semantic_target"]}).fit(joint)
    eye = torch.eye(joint.dims["image"])
    for w in (hard.nets_.w_image, hard.nets_.w_text):
        assert torch.equal(w.detach(), eye) and not w.requires_grad
    for w in (soft.nets_.w_image, soft.nets_.w_text):
        assert not torch.allclose(w.detach(), eye)


def test_prototype_inputs_match_the_papers_construction():
    """h^I_l = sum_i q_il u_i / ||q_l||_1 under the current (soft) q; h^S_l = mean of the k_p words of T nearest the
    word of T nearest h^I_l (that word included), by cosine; brute force."""
    g = torch.Generator().manual_seed(12)
    unit = torch.nn.functional.normalize
    u, v = unit(torch.randn(30, 5, generator=g), dim=1), unit(torch.randn(9, 5, generator=g), dim=1)
    est = MCA(chunk_size=7)
    est.nets_ = _MCANets(5, 3)
    h_image, h_text = est._prototype_inputs(u, v, 4)
    q = est.nets_.q(u).detach()
    want_image = (q.T @ u) / q.sum(0)[:, None]
    np.testing.assert_allclose(h_image.numpy(), want_image.numpy(), rtol=1e-5, atol=1e-6)
    for l in range(3):
        word = int(np.argmax(v.numpy() @ want_image[l].numpy() / np.linalg.norm(want_image[l].numpy())))
        near = np.argsort(-(v.numpy() @ v[word].numpy()), kind="stable")[:4]
        assert word in near
        np.testing.assert_allclose(h_text[l].numpy(), v[near].mean(0).numpy(), rtol=1e-5, atol=1e-6)
