"""The math every paper shares, written once.

Every function here is a small, pure, batched and differentiable torch function that works on
whatever device its inputs live on. Method modules import these; none re-implements them.

Conventions: an *assignment matrix* is an ``(n, k)`` tensor whose rows are probability
distributions over ``k`` clusters. Logarithms are natural (results are in nats).
Functions that return one value per row take ``reduction``: ``"mean"`` (default, what a loss
wants), ``"sum"`` or ``"none"`` (the per-row values).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = [
    "student_t_assignment",
    "target_distribution",
    "kl_divergence",
    "js_divergence",
    "entropy",
    "cluster_size_regularizer",
    "align_clusters",
    "iic_mutual_information",
    "iic_joint",
    "sinkhorn",
    "squared_distances",
    "gaussian_kl",
]

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    # Clamping at the dtype's smallest normal keeps log finite (and its gradient finite) at 0,
    # while x * _safe_log(x) is still exactly 0 there: the 0 log 0 = 0 convention.
    return torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))


def _check_assignment_pair(p: torch.Tensor, q: torch.Tensor, what: str) -> None:
    if p.shape != q.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(p.shape)} vs {tuple(q.shape)}")
    if p.dim() != 2:
        raise ValueError(f"{what}: expected (n, k) assignment matrices, got {p.dim()}-d tensors")


def squared_distances(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances ``||z_i - mu_j||^2`` as an ``(n, k)`` tensor.

    Uses the expansion ``|z|^2 - 2 z.mu + |mu|^2`` (no ``(n, k, d)`` intermediate, so it scales
    to large batches) and clamps the small negative round-off at 0.
    """
    if z.dim() != 2 or centers.dim() != 2 or z.shape[1] != centers.shape[1]:
        raise ValueError(
            f"squared_distances: need z (n, d) and centers (k, d), got {tuple(z.shape)} and {tuple(centers.shape)}"
        )
    d = (z * z).sum(1, keepdim=True) - 2.0 * z @ centers.T + (centers * centers).sum(1)[None, :]
    return d.clamp_min(0.0)


def student_t_assignment(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Soft assignment by a Student's t kernel, DEC (Xie et al. 2016) eq. (1).

    ``q_ij = (1 + |z_i - mu_j|^2 / alpha)^(-(alpha+1)/2) / sum_j' (...)``. JECL eq. (1)-(2) and
    CIGIT-C eq. (2) use it with ``alpha = 1`` (their delta). Computed as a softmax of log-kernels,
    so rows sum to 1 to rounding even for far-away points.
    """
    if alpha <= 0:
        raise ValueError(f"alpha (degrees of freedom) must be > 0, got {alpha}")
    logits = -(alpha + 1.0) / 2.0 * torch.log1p(squared_distances(z, centers) / alpha)
    return torch.softmax(logits, dim=1)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """Auxiliary target distribution, DEC eq. (3) (= CIGIT-C eq. (3)).

    ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')`` with ``f_j = sum_i q_ij`` the soft cluster
    frequency. Squaring sharpens confident assignments; dividing by ``f_j`` stops large clusters
    from absorbing everything. Callers usually compute it under ``torch.no_grad()``.
    """
    if q.dim() != 2:
        raise ValueError(f"target_distribution: expected an (n, k) matrix, got shape {tuple(q.shape)}")
    weight = q * q / q.sum(0, keepdim=True).clamp_min(torch.finfo(q.dtype).tiny)
    return weight / weight.sum(1, keepdim=True)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Row-wise KL(p || q) = sum_j p_j log(p_j / q_j), DEC eq. (2), JECL eq. (3)-(4), CIGIT-C eq. (4).

    Terms with ``p_j = 0`` contribute 0. ``reduction="mean"`` averages over rows (DEC's batch mean).
    """
    _check_assignment_pair(p, q, "kl_divergence")
    per_row = (p * (_safe_log(p) - _safe_log(q))).sum(1)
    return _reduce(per_row, reduction)


def js_divergence(p: torch.Tensor, q: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Row-wise Jensen-Shannon divergence in nats, JECL eq. (6) (the alignment loss).

    ``JSD(p, q) = KL(p || m)/2 + KL(q || m)/2`` with ``m = (p + q)/2``. Symmetric, in
    ``[0, ln 2]``, zero iff ``p == q``, and finite even where either has zeros.
    """
    _check_assignment_pair(p, q, "js_divergence")
    m = 0.5 * (p + q)
    log_m = _safe_log(m)
    per_row = 0.5 * (p * (_safe_log(p) - log_m)).sum(1) + 0.5 * (q * (_safe_log(q) - log_m)).sum(1)
    return _reduce(per_row.clamp_min(0.0), reduction)


def entropy(p: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Row-wise Shannon entropy ``-sum_j p_j log p_j`` in nats (MCA / SIC entropy term, DMIM eq. (4)).

    Pass a 1-d tensor to get the entropy of a single distribution (e.g. the mean assignment).
    """
    if p.dim() == 1:
        return -(p * _safe_log(p)).sum()
    return _reduce(-(p * _safe_log(p)).sum(1), reduction)


def cluster_size_regularizer(q: torch.Tensor) -> torch.Tensor:
    """Distribution regulariser KL(f || u), JECL eq. (8)-(11).

    ``f = mean_i q_i`` is the soft cluster frequency of the batch and ``u`` the uniform
    distribution over ``k`` clusters. It is 0 for perfectly balanced clusters and grows to
    ``ln k`` as the assignment collapses into one cluster, so it penalises empty and tiny clusters.
    """
    if q.dim() != 2:
        raise ValueError(f"cluster_size_regularizer: expected an (n, k) matrix, got shape {tuple(q.shape)}")
    f = q.mean(0)
    k = q.shape[1]
    return (f * (_safe_log(f) + np.log(k))).sum()


def align_clusters(q_a: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
    """Permutation of b's clusters that best matches a's, JECL Section III-e (Hungarian alignment).

    Builds the soft co-assignment matrix ``C = q_a^T q_b`` (``C[i, j]`` = expected number of
    samples put in cluster ``i`` by a and ``j`` by b) and solves the assignment problem that
    maximises the matched mass. Returns ``perm`` (a LongTensor of length k on q_b's device) such
    that ``q_b[:, perm]`` is aligned to ``q_a``: column ``i`` of the result is b's cluster matched to a's
    cluster ``i``. Not differentiable (a discrete choice); the caller applies the permutation.
    """
    _check_assignment_pair(q_a, q_b, "align_clusters")
    overlap = (q_a.detach().T @ q_b.detach()).double().cpu().numpy()
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    perm = np.empty(overlap.shape[0], dtype=np.int64)
    perm[rows] = cols
    return torch.as_tensor(perm, device=q_b.device)


def iic_mutual_information(p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
    """Mutual information of the paired cluster assignments, IIC (Ji et al. 2019) eq. (3); DMIM eq. (2).

    ``P`` is the symmetrised joint of :func:`iic_joint`; ``I = sum P_ij (log P_ij - log P_i - log P_j)``.
    Returns I (maximise it; the loss is ``-I``). It is ln k for a perfect one-to-one joint and 0 for
    independent heads; always in ``[0, ln k]``.
    """
    joint = iic_joint(p_a, p_b)
    marg_i = joint.sum(1, keepdim=True)
    marg_j = joint.sum(0, keepdim=True)
    return (joint * (_safe_log(joint) - _safe_log(marg_i) - _safe_log(marg_j))).sum()


def iic_joint(p_a: torch.Tensor, p_b: torch.Tensor) -> torch.Tensor:
    """Joint distribution of two paired ``(n, k)`` assignments, IIC (Ji et al. 2019) eq. (3); DMIM Section Optimization.

    ``P = (1/n) sum_i p_a_i p_b_i^T`` (the joint marginalised over the batch), symmetrised ``(P + P^T)/2``
    because the two heads are exchangeable, and renormalised to sum to 1 (rounding). A ``(k, k)`` matrix:
    symmetric, non-negative, summing to 1; swapping ``p_a`` and ``p_b`` leaves it unchanged.
    """
    _check_assignment_pair(p_a, p_b, "iic_joint")
    joint = p_a.T @ p_b / p_a.shape[0]
    joint = 0.5 * (joint + joint.T)
    return joint / joint.sum()


def sinkhorn(scores: torch.Tensor, n_iter: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """Balanced soft pseudo-labels by Sinkhorn-Knopp (SwAV, Caron et al. 2020, eq. (3)); DMIM's pseudo-labels.

    ``scores`` are ``(n, k)`` logits. Returns an ``(n, k)`` matrix whose rows sum to 1 and whose
    columns each sum to ``n / k`` after the final column step; more iterations make both hold at once.
    Computed in log-space, so small ``epsilon`` does not overflow. No gradient flows (pseudo-labels).
    """
    if scores.dim() != 2:
        raise ValueError(f"sinkhorn: expected (n, k) scores, got shape {tuple(scores.shape)}")
    if n_iter < 1:
        raise ValueError(f"sinkhorn: n_iter must be >= 1, got {n_iter}")
    if epsilon <= 0:
        raise ValueError(f"sinkhorn: epsilon must be > 0, got {epsilon}")
    n, k = scores.shape
    with torch.no_grad():
        log_q = scores.detach().double() / epsilon
        for _ in range(n_iter):
            # columns to mass n/k each, then rows to mass 1 each
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) + np.log(n / k)
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)
        return log_q.exp().to(scores.dtype)


# -- DM2C (Jiang et al. 2019): Wasserstein critic gap and l1 cycle consistency ------------------------------
__all__ += ["wasserstein_gap", "l1_cycle"]


def wasserstein_gap(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Critic gap ``E[D(real)] - E[D(fake)]``, the Wasserstein adversarial loss of DM2C eq. (3) (WGAN, Arjovsky et al.).

    ``d_real`` and ``d_fake`` are the critic's scores (any shape, e.g. ``(n,)`` or ``(n, 1)``; the two sets may
    differ in size). The critic maximises the gap, the generator minimises it. Swapping the arguments flips the
    sign, equal inputs give 0 and a common shift of every score leaves it unchanged (the critic's bias is free).
    """
    if d_real.numel() == 0 or d_fake.numel() == 0:
        raise ValueError(f"wasserstein_gap: need scores on both sides, got {d_real.numel()} real and {d_fake.numel()} fake")
    return d_real.mean() - d_fake.mean()


def l1_cycle(z: torch.Tensor, z_back: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cycle-consistency loss ``E ||z - z_back||_1``, DM2C eq. (2) (CycleGAN's cycle loss, Zhu et al. 2017).

    ``z_back`` is ``z`` sent to the other modality and back, e.g. ``G_BA(G_AB(z_a))``. Per row the l1 norm
    (sum over features); ``reduction`` over rows (``"mean"`` is eq. (2)'s expectation). Zero iff equal.
    """
    if z.shape != z_back.shape or z.dim() != 2:
        raise ValueError(f"l1_cycle: need two (n, d) tensors of one shape, got {tuple(z.shape)} and {tuple(z_back.shape)}")
    return _reduce((z - z_back).abs().sum(1), reduction)


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """KL(N(mu, diag sigma^2) || N(0, I)) per row, summed over dimensions; DMIM eq. (12) with q(z) = N(0, I).

    ``KL = 1/2 sum_d (sigma_d^2 + mu_d^2 - 1 - 2 log sigma_d)`` (closed form; Kingma & Welling 2014,
    appendix B). ``sigma`` is the standard deviation (> 0), not the variance. It is the exact expectation
    over the reparameterisation noise of ``log p(z|x) - log q(z)`` at ``z = mu + sigma * eps`` (eq. 11), so it
    carries no Monte Carlo noise. Non-negative, and 0 exactly at ``mu = 0, sigma = 1``. ``mu`` and ``sigma``
    are ``(n, d)`` (or ``(d,)`` for one distribution, which returns a scalar whatever ``reduction``).
    """
    if mu.shape != sigma.shape:
        raise ValueError(f"gaussian_kl: shapes differ, {tuple(mu.shape)} vs {tuple(sigma.shape)}")
    per_dim = 0.5 * (sigma * sigma + mu * mu - 1.0) - _safe_log(sigma)
    if mu.dim() == 1:
        return per_dim.sum().clamp_min(0.0)
    return _reduce(per_dim.sum(-1).clamp_min(0.0), reduction)


# -- MCA (Qiu et al. 2024) and SIC (Cai et al. 2023): neighbour consistency, InfoNCE, prototypes, k-NN ----------
__all__ += ["neighbour_consistency", "info_nce", "soft_prototypes", "topk_neighbours"]


def neighbour_consistency(q: torch.Tensor, q_nb: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-log q_i^T q_j`` per row, the consistency part of MCA eq. (1) (SCAN's neighbour loss).

    ``q`` and ``q_nb`` are ``(n, k)`` assignments of each sample and of one of its neighbours. Non-negative (a dot
    product of two distributions is at most 1), 0 exactly when both rows are the same one-hot vector, and finite
    (large) when the rows share no mass: the dot product is clamped at the dtype's smallest normal.
    """
    _check_assignment_pair(q, q_nb, "neighbour_consistency")
    return _reduce(-_safe_log((q * q_nb).sum(1)), reduction)


def info_nce(logits: torch.Tensor, pos: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-log( exp(s_i,pos_i) / sum_{l != pos_i} exp(s_il) )`` per row: MCA eqs. (2) and (3) as printed.

    ``logits`` ``(n, m)`` are the scores already divided by the temperature, ``pos`` ``(n,)`` the positive's
    column. As the paper prints it, the denominator runs over the *other* columns ``l != j`` (not over all of
    them, as InfoNCE usually does), so the value is ``logsumexp_{l != j} s_il - s_ij`` and may be negative.
    Adding a constant to a row changes nothing. Needs ``m >= 2``.
    """
    if logits.dim() != 2 or pos.dim() != 1 or pos.shape[0] != logits.shape[0]:
        raise ValueError(f"info_nce: need logits (n, m) and pos (n,), got {tuple(logits.shape)} and {tuple(pos.shape)}")
    if logits.shape[1] < 2:
        raise ValueError(f"info_nce: need at least 2 columns (a positive and a negative), got {logits.shape[1]}")
    pos = pos.long()
    positive = logits.gather(1, pos[:, None]).squeeze(1)
    others = logits.scatter(1, pos[:, None], float("-inf"))
    return _reduce(torch.logsumexp(others, dim=1) - positive, reduction)


def soft_prototypes(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Assignment-weighted means ``h_l = sum_i q_il x_i / ||q_l||_1``, MCA's image prototypes (Section
    "Prototype-level alignment"). ``q`` ``(n, k)`` non-negative, ``x`` ``(n, d)``; returns ``(k, d)``.

    A one-hot ``q`` gives the class means; scaling a column of ``q`` leaves its prototype unchanged. A column with
    no mass gives a zero prototype rather than NaN.
    """
    if q.dim() != 2 or x.dim() != 2 or q.shape[0] != x.shape[0]:
        raise ValueError(f"soft_prototypes: need q (n, k) and x (n, d), got {tuple(q.shape)} and {tuple(x.shape)}")
    mass = q.sum(0).clamp_min(torch.finfo(q.dtype).tiny)
    return (q.T @ x) / mass[:, None]


@torch.no_grad()
def topk_neighbours(a: torch.Tensor, b: torch.Tensor, k: int, chunk_size: int = 4096,
                    exclude_self: bool = False) -> torch.Tensor:
    """Indices ``(n_a, k)`` of the ``k`` rows of ``b`` most cosine-similar to each row of ``a``, most similar first.

    MCA's neighbourhoods (k_I image neighbours, k_S nearest nouns, k_p prototype neighbours) and its semantic-space
    search. ``a`` is processed ``chunk_size`` rows at a time, so memory is ``chunk_size x n_b`` whatever ``n_a``;
    each row's answer is the same for any chunk size. ``exclude_self`` (``a`` and ``b`` the same rows) leaves row
    ``i`` out of its own neighbours.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"topk_neighbours: need a (n, d) and b (m, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    available = b.shape[0] - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise ValueError(f"topk_neighbours: k={k} must be in 1..{available}")
    if chunk_size < 1:
        raise ValueError(f"topk_neighbours: chunk_size must be >= 1, got {chunk_size}")
    if exclude_self and a.shape[0] != b.shape[0]:
        raise ValueError("topk_neighbours: exclude_self needs a and b to be the same rows")
    a_n = torch.nn.functional.normalize(a, dim=1)
    b_n = torch.nn.functional.normalize(b, dim=1)
    out = []
    for start in range(0, a_n.shape[0], chunk_size):
        sims = a_n[start:start + chunk_size] @ b_n.T
        if exclude_self:
            rows = torch.arange(sims.shape[0], device=sims.device)
            sims[rows, rows + start] = float("-inf")
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out)
