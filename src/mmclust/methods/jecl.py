"""JECL: Joint Embedding Clustering of image-text pairs (the paper in ``jecl.txt``, Section III).

Two DEC encoders (image, text) give soft assignments q and r (eqs. 1-2, ``ops.student_t_assignment``);
the text clusters are aligned to the image clusters by the Hungarian algorithm on their co-assignment
matrix (Section III-c, ``ops.align_clusters``); both views are trained towards one joint target
p = lambda target(q) + (1 - lambda) target(r) (eq. 5) with KL(p||q) + KL(p||r) (eqs. 3-4), plus
gamma JSD(q, r) (eqs. 6-7, ``ops.js_divergence``) and beta [KL(f_q||u) + KL(f_r||u)] (eqs. 8-12,
``ops.cluster_size_regularizer``): eq. (13). Defaults: lambda = 0.5, gamma = 0.1, beta = 0.1 (Section IV-D);
DEC components as in Xie et al. (see ``mmclust.methods.dec``).

Ablations (Table II rows) are flags: ``align=False`` drops the alignment loss (gamma term; the caption calls
it "alignment loss"), ``regularize=False`` drops the distribution regulariser, both drop both. The Hungarian
cluster matching stays in every variant: without it the joint target of eq. (5) mixes unrelated clusters.

The alignment is recomputed at every target update (the clusters may swap while training).
``labels_`` are ``argmax_j p_ij`` (eq. 14), the paper's final assignment.
This implementation needs complete pairs (protocol ``paired``); eq. (5)'s remark on missing views is not built.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import ops
from ..data import DataError
from ..runtime import resolve_device, seed_from, torch_generator
from .base import MultiModalClusterer
from .dec import pretrained_encoder, self_training
from .nets import as_device_tensor, kmeans_centers

__all__ = ["JECL", "joint_target", "jecl_loss"]


def joint_target(q: torch.Tensor, r_aligned: torch.Tensor, lam: float = 0.5) -> torch.Tensor:
    """Joint target distribution, JECL eq. (5): lambda target(q) + (1 - lambda) target(r)."""
    return lam * ops.target_distribution(q) + (1.0 - lam) * ops.target_distribution(r_aligned)


def jecl_loss(p, q, r_aligned, gamma=0.1, beta=0.1, align=True, regularize=True) -> dict:
    """JECL objective, eq. (13): KL(p||q) + KL(p||r) + gamma JSD(q, r) + beta (KL(f_q||u) + KL(f_r||u)).

    Returns the total and its parts (the parts are logged in ``history_``).
    """
    parts = {"cluster": ops.kl_divergence(p, q) + ops.kl_divergence(p, r_aligned)}
    total = parts["cluster"]
    if align:
        parts["align"] = ops.js_divergence(q, r_aligned)
        total = total + gamma * parts["align"]
    if regularize:
        parts["regularizer"] = ops.cluster_size_regularizer(q) + ops.cluster_size_regularizer(r_aligned)
        total = total + beta * parts["regularizer"]
    parts["total"] = total
    return parts


class JECL(MultiModalClusterer):
    """Joint Embedding Clustering for paired two-view data (first view = image, second = text).

    Parameters: ``lam`` (lambda, 0.5), ``gamma`` (0.1), ``beta`` (0.1), ``align``, ``regularize`` (Table II
    ablations), DEC settings ``hidden``, ``latent_dim``, ``alpha``, ``pretrain_epochs``, ``pretrain_lr``,
    ``corruption``, ``lr``, ``momentum``, ``batch_size``, ``update_interval``, ``tol``, ``max_epochs``,
    ``kmeans_n_init`` (see ``mmclust.methods.dec``), and ``random_state``, ``device``, ``verbose``.

    Attributes: ``labels_`` (argmax of the joint target), ``alignment_`` (text cluster matched to each
    image cluster), ``history_``, ``n_iter_``, ``converged_``.
    """

    N_VIEWS = 2  # exactly two views (image, text): a file's other views are left out, see RunSpec.data_options
    VARIANTS = {"full": {}, "no_align": {"align": False}, "no_regularizer": {"regularize": False},
                "no_align_no_regularizer": {"align": False, "regularize": False}}

    def __init__(self, n_clusters=None, lam=0.5, gamma=0.1, beta=0.1, align=True, regularize=True,
                 hidden=(500, 500, 2000), latent_dim=10, alpha=1.0, pretrain_epochs=200, pretrain_lr=1e-3,
                 corruption=0.2, lr=0.01, momentum=0.9, batch_size=256, update_interval=140, tol=0.001,
                 max_epochs=200, kmeans_n_init=20, random_state=None, device="auto", verbose=False):
        self.n_clusters = n_clusters
        self.lam = lam
        self.gamma = gamma
        self.beta = beta
        self.align = align
        self.regularize = regularize
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.alpha = alpha
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.corruption = corruption
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.update_interval = update_interval
        self.tol = tol
        self.max_epochs = max_epochs
        self.kmeans_n_init = kmeans_n_init
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    def _validate(self, ds) -> int:
        self._check_dataset(ds, min_views=2)
        if len(ds.views) != 2:
            raise DataError(f"{ds.name}: JECL takes exactly two views (image, text), got {list(ds.views)}")
        if not ds.complete.all():
            raise DataError(f"{ds.name}: JECL here needs every image-text pair complete (protocol 'paired'); "
                            f"{int((~ds.complete).sum())} samples lack a view")
        if not 0.0 <= self.lam <= 1.0 or self.gamma < 0 or self.beta < 0:
            raise DataError("JECL: need 0 <= lam <= 1, gamma >= 0, beta >= 0")
        return self._n_clusters(ds)

    def fit(self, ds, y=None):
        ds = self._check_dataset(ds)  # a list / dict of arrays as views; sparse views densified
        k = self._validate(ds)
        seed = seed_from(self.random_state)
        device = resolve_device(self.device)
        v_img, v_txt = ds.views
        x_img = as_device_tensor(ds.views[v_img], device)
        x_txt = as_device_tensor(ds.views[v_txt], device)
        # Section III-a: a stacked denoising auto-encoder per view, decoder discarded afterwards; the same
        # pre-training DEC gets for that view and seed (see mmclust.methods.dec)
        settings = (self.hidden, self.latent_dim, self.pretrain_epochs, self.pretrain_lr, self.batch_size, self.corruption, seed)
        enc_img, hist_img = pretrained_encoder(x_img, *settings, name="image", verbose=self.verbose)
        enc_txt, hist_txt = pretrained_encoder(x_txt, *settings, name="text", verbose=self.verbose)
        self.pretrain_history_ = [{**a, **b} for a, b in zip(hist_img, hist_txt)]
        gen = torch_generator(seed, device)  # the clustering phase's minibatch order
        with torch.no_grad():
            enc_img.eval()
            enc_txt.eval()
            mu_img = nn.Parameter(kmeans_centers(enc_img(x_img), k, self.kmeans_n_init, seed))
            mu_txt = nn.Parameter(kmeans_centers(enc_txt(x_txt), k, self.kmeans_n_init, seed))
        opt = torch.optim.SGD(list(enc_img.parameters()) + list(enc_txt.parameters()) + [mu_img, mu_txt],
                              lr=self.lr, momentum=self.momentum)
        perm = torch.arange(k, device=device)
        parts_log, part_names = [], []

        def assign(idx):
            return (ops.student_t_assignment(enc_img(x_img[idx]), mu_img, self.alpha),
                    ops.student_t_assignment(enc_txt(x_txt[idx]), mu_txt, self.alpha))

        def realign(assigned):
            nonlocal perm
            q, r = assigned
            perm = ops.align_clusters(q, r)  # Section III-c, on the full data at each target update
            return q, r

        def targets(assigned):
            q, r = assigned
            return joint_target(q, r[:, perm], self.lam)

        def loss(idx, p_batch, assigned):
            q, r = assigned
            parts = jecl_loss(p_batch, q, r[:, perm], self.gamma, self.beta, self.align, self.regularize)
            parts_log.append(torch.stack([v.detach() for v in parts.values()]))  # read back once, after training
            part_names[:] = list(parts)
            return parts["total"]

        result = self_training(assign, targets, loss, [enc_img, enc_txt], opt, ds.n_samples, self.batch_size,
                               self.update_interval, self.tol, self.max_epochs, gen, device, self.verbose, "JECL",
                               on_update=realign, labels_of=lambda assigned, p: p.argmax(1))
        # per-epoch means of the loss parts next to the total (the parts' one host copy)
        parts_log = torch.stack(parts_log).double().cpu().tolist() if parts_log else []
        parts_log = [dict(zip(part_names, row)) for row in parts_log]
        history, start = [], 0
        for row in result["history"]:
            n_batches = row["iterations"] - (history[-1]["iterations"] if history else 0)
            chunk = parts_log[start:start + n_batches]
            start += n_batches
            extra = {f"{key}_loss": float(np.mean([c[key] for c in chunk])) for key in (chunk[0] if chunk else {})}
            history.append({**row, **extra})
        self.history_ = history
        self.labels_ = result["labels"]
        self.alignment_ = perm.cpu().numpy()
        self.n_iter_, self.converged_ = result["n_iter"], result["converged"]
        self.encoders_ = (enc_img, enc_txt)
        self.cluster_centers_ = (mu_img.detach().cpu().numpy(), mu_txt.detach().cpu().numpy())
        self.fitted_dims_ = dict(ds.dims)
        return self

    def predict(self, ds) -> np.ndarray:
        """New samples, read as ``labels_`` is: argmax of the joint target (eq. 5) of the trained encoders'
        assignments. The target's cluster frequencies f are those of the samples given, so a sample's label
        can depend on the other samples predicted with it (as in the paper's transductive setting)."""
        ds = self._check_fitted_for(ds)
        if not ds.complete.all():
            raise DataError(f"{ds.name}: JECL predicts complete image-text pairs only")
        enc_img, enc_txt = self.encoders_
        device = next(enc_img.parameters()).device
        mu_img, mu_txt = (torch.as_tensor(c, device=device) for c in self.cluster_centers_)
        v_img, v_txt = ds.views
        with torch.no_grad():
            q = ops.student_t_assignment(enc_img(as_device_tensor(ds.views[v_img], mu_img.device)), mu_img, self.alpha)
            r = ops.student_t_assignment(enc_txt(as_device_tensor(ds.views[v_txt], mu_txt.device)), mu_txt, self.alpha)
            p = joint_target(q, r[:, torch.as_tensor(self.alignment_, device=r.device)], self.lam)
        return p.argmax(1).cpu().numpy().astype(np.int64)
