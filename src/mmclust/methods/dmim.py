"""DMIM: Deep Mutual Information Maximin for cross-modal clustering (the paper in ``dmim.txt``).

Three layers, as in ClustPy: the pure objective (``dmim_loss``, eq. 14, returning its parts) and the
pseudo-label step (``sinkhorn_pseudo_labels``, eq. 13), the network bundle (``_DMIMNet``), and the public
estimator ``DMIM``. Shared math comes from :mod:`mmclust.ops` (``iic_mutual_information`` for eqs. 1-2,
``gaussian_kl`` for eq. 12, ``sinkhorn`` for eq. 13).

What the paper fixes (Section "Experimental Setup"): PCA of each modality to 100 dimensions; a shared
encoder Phi of two fully connected layers, each followed by BatchNorm and ReLU; a clustering layer C with
|Y| outputs and an over-clustering layer C' with 10 |Y| outputs (Fig. 4's best), each with a softmax;
random initialisation; Adam with learning rate 5e-5; averages of 20 runs; labels = output of C.

Choices where the paper is silent (each also noted at its parameter):

* **Shared trunk, one pass per modality.** Phi runs on each modality in its own forward pass, so BatchNorm
  normalises each modality with that modality's own batch statistics (the official code does the same).
  For the eval-mode pass that gives ``labels_`` and ``predict``, every BatchNorm layer keeps one set of
  running statistics per modality (the affine weights are shared: they belong to Phi). The official code
  has one running average that mixes both modalities; a per-modality one is what an image-only eval pass
  actually sees in training.
* **Width and initialisation** (official code): hidden width 100 (its encoder is Linear(100, 100) twice);
  Linear weights N(0, 0.02), biases 0, BatchNorm affine (1, 0).
* **Where the heads read** (unclear in the paper): C and C' read the deterministic trunk output, as in the
  official code; the Gaussian p(z|x) = N(mu(x), sigma(x)) of eq. (11) comes from a third head on the same
  output (Linear(100, 200) split into mu and sigma = softplus(.) + 1e-7, official code).
* **Superfluous-information term** (eqs. 3-12): the bound of eq. (12) with q(z) = N(0, I) (the paper names
  no prior; the official code samples N(0, I)). The expectation over eps in eq. (12) is taken in closed
  form (``ops.gaussian_kl``, summed over the 100 dimensions, averaged over the N samples, summed over the
  two modalities), which is the exact value the reparameterised Monte Carlo estimate of eq. (11) targets.
  Eqs. (6), (7), (12) print > / < for >= / <= and q(x1) for q(z1); read as the latter.
* **Uniform constraint** (eq. 13, "following Asano et al. 2020", SeLa): pseudo-labels from Sinkhorn-Knopp on
  each modality's own C output, lambda = 10 and 75 iterations (official code), argmax, refreshed every 5
  steps (official code), then a cross-entropy of C's logits against them with weight 1/2 on the mean over
  the two modalities (the official code's ``/2``). The official code computes them on the image modality
  only and feeds softmax probabilities to ``CrossEntropyLoss``: that is the ``official_code`` variant.
* **Weights of eq. (14)** are all 1: ``-I_C - I_C' + SIE + uniform``, minimised. Algorithm 1 (l. 4-6)
  sums the C and C' losses, each "according to eq. (14)"; the SIE term does not depend on the head and is
  counted once, and the uniform term belongs to C (the head whose labels are the output).
* **Full batch, 500 steps** (Fig. 3 converges in about 500 iterations; the official code runs 500 full-batch
  epochs): ``max_epochs`` counts optimiser steps.
* **Input**: each modality is PCA-reduced to ``min(100, d)`` on all rows (label-free), fitted once in
  ``fit``; a modality already at or below 100 dimensions (the ``dmim_*`` files are the authors' 100-d
  features) is left as it is. The shared encoder takes one input width, so a narrower modality is
  zero-padded on the right to the widest one (e.g. ``wiki_sift_lda``: text 10-d padded to the image's 100).
  The padded inputs are constant zero, so the first Linear layer simply ignores them. Measured on
  ``wiki_sift_lda`` (seed 0, paper settings, evaluation only): the text head on the padded 10-d LDA view
  reaches ACC 0.63 while the image head, which gives ``labels_``, stays at 0.17; k-means on the SIFT view
  alone gets 0.17 too. The weak image view, not the padding, keeps DMIM near chance there.
* **Ablations** (Table 3): "Without Over" drops C' (``overcluster=False``), "Without SIE" drops eq. (12)
  (``sie=False``), "Without Over and SIE" keeps "only I(Z1; Z2)", so it also drops the uniform term. Whether
  the paper kept the uniform term in the two single ablations is not stated; it is kept here (Table 3's
  cells are marked uncertain for this reason).

``labels_`` are the argmax of C on the image modality (the first view), computed in eval mode with the
parameters after the last step (the paper: "the clustering result is the output of clustering layer C";
the official code evaluates the image modality). The official code also tracks the best epoch by ACC
against the ground truth during training. That reads the labels inside training, cannot pass mmclust's
label-leak test, and is deliberately left out: there is no label-selected variant.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import StrOptions
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import ops
from ..data import DataError, MultiModalDataset
from ..runtime import resolve_device, seed_from, torch_generator
from .base import DivergenceError, MultiModalClusterer
from .nets import as_device_tensor, mlp

__all__ = ["DMIM", "dmim_loss", "sinkhorn_pseudo_labels"]

_SIE_ESTIMATORS = ("closed_form", "softmax_sample")
_UNIFORM_VIEWS = ("both", "image")
_UNIFORM_ON = ("logits", "probabilities")


# -- the math specific to DMIM (shared pieces come from mmclust.ops) -----------------------------------
def sinkhorn_pseudo_labels(logits: torch.Tensor, lam: float = 10.0, n_iter: int = 75) -> torch.Tensor:
    """Balanced hard pseudo-labels for the uniform constraint, DMIM eq. (13) (SeLa, Asano et al. 2020).

    Sinkhorn-Knopp on ``p^lam`` (p = softmax(logits)), i.e. ``ops.sinkhorn(logits, epsilon=1/lam)`` (a row's
    log-normaliser cancels in the row step), then argmax per row. The official code's ``UD_constraint`` does
    the same with lam = 10 and at most 75 iterations. Returns a LongTensor ``(n,)``; no gradient flows.
    """
    return ops.sinkhorn(logits.detach(), n_iter=n_iter, epsilon=1.0 / lam).argmax(1)


def dmim_loss(cluster_logits, over_logits=None, gaussians=None, pseudo_labels=None, uniform_weight=0.5,
              uniform_on="logits", sie_estimator="closed_form", noise=None) -> dict:
    """DMIM's objective, eq. (14) written as a loss to minimise, with its parts.

    ``total = -I(Z1; Z2)[C] - I(Z1; Z2)[C'] + SIE + uniform``:

    * ``mi_cluster``: eqs. (1)-(2) on the clustering head, ``ops.iic_mutual_information`` of the two
      modalities' softmax outputs (Algorithm 1 l. 4). ``cluster_logits`` = (image logits, text logits).
    * ``mi_overcluster``: the same on the over-clustering head (Algorithm 1 l. 5); ``over_logits=None`` drops
      it (Table 3's "Without Over") and the part is 0.
    * ``sie``: eq. (12), ``(1/N) sum_i sum_m KL[p(z_m|x_m) || N(0, I)]``; ``gaussians`` = ((mu, sigma) image,
      (mu, sigma) text); ``None`` drops it ("Without SIE"). ``sie_estimator="closed_form"`` takes eq. (12)'s
      expectation over eps exactly (``ops.gaussian_kl``). ``"softmax_sample"`` is the official code's
      estimator: ``KL(softmax(eps') || softmax(z))`` with ``z = mu + sigma * eps`` (eq. 11) and an independent
      prior sample ``eps'``, averaged over all N x d elements; ``noise`` = ((eps, eps') image, (eps, eps') text).
    * ``uniform``: eq. (13), ``uniform_weight`` x the mean over the modalities with pseudo-labels of the
      cross-entropy of C against them; ``pseudo_labels`` = (image labels or None, text labels or None), or
      ``None`` to drop the term. ``uniform_on="probabilities"`` feeds softmax outputs to the cross-entropy as
      the official code does.
    """
    if uniform_on not in _UNIFORM_ON:
        raise ValueError(f"uniform_on must be one of {_UNIFORM_ON}, got {uniform_on!r}")
    if sie_estimator not in _SIE_ESTIMATORS:
        raise ValueError(f"sie_estimator must be one of {_SIE_ESTIMATORS}, got {sie_estimator!r}")
    c_img, c_txt = cluster_logits
    zero = c_img.new_zeros(())
    mi_c = ops.iic_mutual_information(torch.softmax(c_img, 1), torch.softmax(c_txt, 1))
    mi_o = zero
    if over_logits is not None:
        mi_o = ops.iic_mutual_information(torch.softmax(over_logits[0], 1), torch.softmax(over_logits[1], 1))
    sie = zero
    if gaussians is not None:
        if sie_estimator == "closed_form":
            sie = sum(ops.gaussian_kl(mu, sigma) for mu, sigma in gaussians)
        else:
            if noise is None:
                raise ValueError("sie_estimator='softmax_sample' needs noise=((eps, prior_eps) per modality)")
            # F.kl_div(log_softmax(z), softmax(eps'), reduction="mean") written out: the mean over N x d elements
            sie = sum((F.softmax(prior, 1) * (F.log_softmax(prior, 1) - F.log_softmax(mu + sigma * eps, 1))).mean()
                      for (mu, sigma), (eps, prior) in zip(gaussians, noise))
    uniform = zero
    if pseudo_labels is not None:
        terms = [F.cross_entropy(torch.softmax(lg, 1) if uniform_on == "probabilities" else lg, pl)
                 for lg, pl in zip(cluster_logits, pseudo_labels) if pl is not None]
        if terms:
            uniform = uniform_weight * torch.stack(terms).mean()
    total = -mi_c - mi_o + sie + uniform
    return {"total": total, "mi_cluster": mi_c, "mi_overcluster": mi_o, "sie": sie, "uniform": uniform}


# -- networks -----------------------------------------------------------------------------------------
class _PerViewBatchNorm(nn.Module):
    """BatchNorm1d with shared affine weights and one set of running statistics per modality.

    In training each call normalises with the batch statistics of the modality it is given (so another
    modality's data never changes it); in eval mode it uses that modality's running statistics.
    """

    def __init__(self, num_features: int, n_views: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.BatchNorm1d(num_features, affine=False) for _ in range(n_views))
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, view: int) -> torch.Tensor:
        return self.norms[view](x) * self.weight + self.bias


class _DMIMNet(nn.Module):
    """Phi (2 x [Linear, BatchNorm, ReLU]), the Gaussian head (mu, sigma), C (k) and C' (over_k; 0 = none).

    C' is registered last, so that with the same generator a net without it draws the same initial
    weights for everything else.
    """

    def __init__(self, d_in: int, width: int, k: int, over_k: int, n_views: int = 2):
        super().__init__()
        self.width = width
        trunk = mlp([d_in, width, width], batchnorm=True, negative_slope=0.0)  # LeakyReLU(0) = ReLU
        self.trunk = nn.Sequential(*[_PerViewBatchNorm(m.num_features, n_views) if isinstance(m, nn.BatchNorm1d) else m
                                     for m in trunk])
        self.gaussian = nn.Linear(width, 2 * width)
        self.cluster = nn.Linear(width, k)
        self.overcluster = nn.Linear(width, over_k) if over_k else None

    def features(self, x: torch.Tensor, view: int) -> torch.Tensor:
        for layer in self.trunk:
            x = layer(x, view) if isinstance(layer, _PerViewBatchNorm) else layer(x)
        return x

    def forward(self, x: torch.Tensor, view: int) -> dict:
        h = self.features(x, view)
        mu, raw = self.gaussian(h).split(self.width, dim=1)
        return {"logits": self.cluster(h), "over_logits": None if self.overcluster is None else self.overcluster(h),
                "mu": mu, "sigma": F.softplus(raw) + 1e-7}


@torch.no_grad()
def _normal_init_(net: nn.Module, std: float, generator: torch.Generator) -> None:
    """Official code's init: Linear weights N(0, std), biases 0 (BatchNorm keeps (1, 0)); local generator."""
    for m in net.modules():
        if isinstance(m, nn.Linear):
            m.weight.normal_(0.0, std, generator=generator)
            m.bias.zero_()


# -- the estimator --------------------------------------------------------------------------------------
class DMIM(MultiModalClusterer):
    """DMIM estimator for paired two-view (image, text) data.

    Parameters (defaults: the paper where it says, else the official code, else a stated choice)
    ----------
    n_clusters : int or None — |Y|; None takes it from the data set.
    width : int, default 100 — hidden width of Phi and size of z (official code: Linear(100, 100) x 2).
    overcluster : bool, default True — the over-clustering head C' (Section "Network Architecture");
        False is Table 3's "Without Over".
    overcluster_factor : int, default 10 — C' has ``overcluster_factor * k`` outputs (Setup; Fig. 4's best).
    sie : bool, default True — the superfluous-information term eq. (12); False is Table 3's "Without SIE".
    sie_estimator : {"closed_form", "softmax_sample"} — eq. (12)'s expectation in closed form (default), or
        the official code's softmax-sample KL (see ``dmim_loss``).
    uniform : bool, default True — the uniform constraint eq. (13) (off only in "Without Over and SIE").
    uniform_views : {"both", "image"}, default "both" — each modality's C gets its own pseudo-labels
        (eq. 13 constrains q(x1) and q(x2)); "image" as the official code.
    uniform_on : {"logits", "probabilities"}, default "logits" — what the cross-entropy reads; the official
        code passes softmax probabilities.
    uniform_weight : float, default 0.5 — the official code's ``criterion(...)/2``.
    refresh_every : int, default 5 — steps between pseudo-label refreshes (official code: every 5 epochs).
    sinkhorn_lambda : float, default 10 — SeLa's lambda (official code: ``CL **= 10``).
    sinkhorn_iter : int, default 75 — Sinkhorn iterations (official code's cap; it may stop earlier).
    lr : float, default 5e-5 — Adam learning rate (paper; the official code uses 5e-4: ``official_code``).
    max_epochs : int, default 500 — full-batch optimiser steps (Fig. 3; official code 500 epochs).
    init_std : float, default 0.02 — std of the normal weight init (official code; the paper: "randomly").
    pca_dim : int or None, default 100 — PCA each modality wider than this to this many dimensions
        (paper); None feeds the features as they are.
    random_state, device, verbose : as everywhere in mmclust.

    Attributes: ``labels_`` (eval-mode argmax of C on the image view after the last step),
    ``cluster_probabilities_`` (n, k), ``history_`` (one dict per step: the loss parts and whether the
    pseudo-labels were refreshed), ``n_steps_``, ``net_``, ``input_dim_``.
    """

    N_VIEWS = 2  # exactly two views (image, text): a file's other views are left out, see RunSpec.data_options
    VARIANTS = {
        "full": {},
        "no_over": {"overcluster": False},
        "no_sie": {"sie": False},
        "no_over_no_sie": {"overcluster": False, "sie": False, "uniform": False},  # "only I(Z1; Z2)"
        # the official code's settings, reported beside (never instead of) the paper's reading
        "official_code": {"lr": 5e-4, "sie_estimator": "softmax_sample", "uniform_views": "image",
                          "uniform_on": "probabilities"},
    }

    # string options as a scikit-learn constraints table (checked before a run starts; see mmclust.repro.validate)
    _parameter_constraints = {"sie_estimator": [StrOptions(set(_SIE_ESTIMATORS))], "uniform_on": [StrOptions(set(_UNIFORM_ON))],
                              "uniform_views": [StrOptions(set(_UNIFORM_VIEWS))]}

    def __init__(self, n_clusters=None, width=100, overcluster=True, overcluster_factor=10, sie=True,
                 sie_estimator="closed_form", uniform=True, uniform_views="both", uniform_on="logits",
                 uniform_weight=0.5, refresh_every=5, sinkhorn_lambda=10.0, sinkhorn_iter=75, lr=5e-5,
                 max_epochs=500, init_std=0.02, pca_dim=100, random_state=None, device="auto", verbose=False):
        self.n_clusters = n_clusters
        self.width = width
        self.overcluster = overcluster
        self.overcluster_factor = overcluster_factor
        self.sie = sie
        self.sie_estimator = sie_estimator
        self.uniform = uniform
        self.uniform_views = uniform_views
        self.uniform_on = uniform_on
        self.uniform_weight = uniform_weight
        self.refresh_every = refresh_every
        self.sinkhorn_lambda = sinkhorn_lambda
        self.sinkhorn_iter = sinkhorn_iter
        self.lr = lr
        self.max_epochs = max_epochs
        self.init_std = init_std
        self.pca_dim = pca_dim
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- validation --------------------------------------------------------------------------------
    def _validate(self, ds) -> int:
        self._check_dataset(ds, min_views=2)
        if len(ds.views) != 2:
            raise DataError(f"{ds.name}: DMIM takes exactly two views (image, text), got {list(ds.views)}")
        if not ds.complete.all():
            missing = np.flatnonzero(~ds.complete)
            raise DataError(f"{ds.name}: DMIM needs paired data (protocol 'paired'): {missing.size} samples lack "
                            f"a view, first row {int(missing[0])}")
        k = self._n_clusters(ds)
        checks = {"sie_estimator": _SIE_ESTIMATORS, "uniform_views": _UNIFORM_VIEWS, "uniform_on": _UNIFORM_ON}
        for name, valid in checks.items():
            if getattr(self, name) not in valid:
                raise DataError(f"DMIM: {name} must be one of {valid}, got {getattr(self, name)!r}")
        if not (self.lr > 0 and self.init_std > 0 and self.sinkhorn_lambda > 0 and self.uniform_weight >= 0):
            raise DataError("DMIM: need lr > 0, init_std > 0, sinkhorn_lambda > 0, uniform_weight >= 0")
        if self.width < 1 or self.overcluster_factor < 1 or self.refresh_every < 1 or self.sinkhorn_iter < 1:
            raise DataError("DMIM: width, overcluster_factor, refresh_every and sinkhorn_iter must be >= 1")
        if self.max_epochs < 0 or (self.pca_dim is not None and self.pca_dim < 1):
            raise DataError("DMIM: max_epochs must be >= 0 and pca_dim None or >= 1")
        if ds.n_samples < 2:
            raise DataError(f"{ds.name}: BatchNorm needs at least 2 samples")
        return k

    # -- input: PCA per view (label-free) and zero-padding to one width --------------------------------
    def _fit_inputs(self, ds: MultiModalDataset) -> list[np.ndarray]:
        self.pca_ = []
        for v in ds.views:
            x = np.asarray(ds.views[v], dtype=np.float64)
            pca = None
            if self.pca_dim is not None and x.shape[1] > self.pca_dim:
                pca = PCA(n_components=self.pca_dim, svd_solver="full").fit(x)
            self.pca_.append(pca)
        self.view_names_ = list(ds.views)
        self.view_dims_ = [ds.views[v].shape[1] for v in ds.views]
        widths = [p.n_components_ if p is not None else d for p, d in zip(self.pca_, self.view_dims_)]
        self.input_dim_ = int(max(widths))
        return self._inputs(ds)

    def _inputs(self, ds: MultiModalDataset, views=None) -> list[np.ndarray]:
        names = list(ds.views)
        out = []
        for i in (range(len(names)) if views is None else views):
            x = np.asarray(ds.views[names[i]], dtype=np.float64)
            if x.shape[1] != self.view_dims_[i]:
                raise DataError(f"{ds.name}: view {names[i]!r} has {x.shape[1]} features, fit saw {self.view_dims_[i]}")
            if self.pca_[i] is not None:
                x = self.pca_[i].transform(x)
            pad = self.input_dim_ - x.shape[1]  # a narrower view is zero-padded on the right (module doc)
            out.append(np.pad(x, ((0, 0), (0, pad))).astype(np.float32))
        return out

    def _build_net(self, k: int, seed: int, device) -> _DMIMNet:
        net = _DMIMNet(self.input_dim_, self.width, k, self.overcluster_factor * k if self.overcluster else 0)
        _normal_init_(net, self.init_std, torch_generator(seed, "cpu"))  # on CPU: the same init on any device
        return net.to(device)

    @staticmethod
    def _forward(net: _DMIMNet, xs) -> list[dict]:
        """Phi run on each modality in its own pass: BatchNorm sees one modality's batch statistics at a time."""
        return [net(x, v) for v, x in enumerate(xs)]

    def _losses(self, outs, pseudo, gen) -> dict:
        """Eq. (14)'s parts from both views' training-mode outputs (one ``net(x, view)`` pass per view)."""
        noise = None
        if self.sie and self.sie_estimator == "softmax_sample":
            noise = [tuple(torch.randn(o["mu"].shape, generator=gen, device=gen.device).to(o["mu"].device) for _ in range(2))
                     for o in outs]
        return dmim_loss(
            tuple(o["logits"] for o in outs),
            over_logits=tuple(o["over_logits"] for o in outs) if self.overcluster else None,
            gaussians=tuple((o["mu"], o["sigma"]) for o in outs) if self.sie else None,
            pseudo_labels=pseudo if self.uniform else None, uniform_weight=self.uniform_weight,
            uniform_on=self.uniform_on, sie_estimator=self.sie_estimator, noise=noise)

    def _pseudo_labels(self, outs) -> tuple:
        views = range(len(outs)) if self.uniform_views == "both" else (0,)
        return tuple(sinkhorn_pseudo_labels(o["logits"], self.sinkhorn_lambda, self.sinkhorn_iter) if v in views else None
                     for v, o in enumerate(outs))

    # -- the training procedure ----------------------------------------------------------------------
    def fit(self, ds, y=None):
        ds = self._check_dataset(ds)  # a list / dict of arrays as views; sparse views densified
        k = self._validate(ds)
        seed = seed_from(self.random_state)
        device = resolve_device(self.device)
        gen = torch_generator(seed, device)  # the softmax-sample estimator's noise
        xs = [as_device_tensor(a, device) for a in self._fit_inputs(ds)]
        net = self._build_net(k, seed, device)
        self.net_ = net
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        self.history_ = []
        pseudo = None
        for step in tqdm(range(self.max_epochs), desc="DMIM", disable=not self.verbose, unit="step"):
            net.train()
            outs = self._forward(net, xs)
            refresh = self.uniform and step % self.refresh_every == 0
            if refresh:
                # eq. (13): pseudo-labels from this step's C outputs, detached (the values the official code's
                # UD_constraint computes before its update)
                pseudo = self._pseudo_labels(outs)
            parts = self._losses(outs, pseudo, gen)
            # every part in one host copy (one synchronisation a step, which is an epoch: full-batch training),
            # read before the update so that a non-finite loss stops the fit before it reaches the weights
            read = dict(zip(parts, torch.stack([val.detach().reshape(()) for val in parts.values()]).cpu().tolist()))
            if not math.isfinite(read["total"]):
                raise DivergenceError(f"DMIM loss became non-finite at epoch {step}", epoch=step)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            self.history_.append({"step": step, **{f"{key}_loss" if key == "total" else key: val for key, val in read.items()},
                                  "pseudo_refreshed": bool(refresh)})
        self.n_steps_ = self.max_epochs
        logits = self._image_logits(xs[0])
        self.cluster_probabilities_ = torch.softmax(logits, 1).cpu().numpy()
        self.labels_ = logits.argmax(1).cpu().numpy().astype(np.int64)  # argmax of the logits: no rounding ties
        return self

    @torch.no_grad()
    def _image_logits(self, x_img: torch.Tensor) -> torch.Tensor:
        """C's logits on the image view, in eval mode (the image view's running BatchNorm statistics)."""
        self.net_.eval()
        return self.net_(x_img, 0)["logits"]

    def predict(self, ds) -> np.ndarray:
        """Argmax of C on the image view of new samples (eval mode, the image view's BatchNorm statistics)."""
        if not hasattr(self, "net_"):
            raise RuntimeError("DMIM: call fit before predict")
        self._check_dataset(ds, min_views=1)
        if list(ds.views)[0] != self.view_names_[0]:
            raise DataError(f"{ds.name}: predict reads the image view {self.view_names_[0]!r}, got {list(ds.views)}")
        if not ds.present[self.view_names_[0]].all():
            raise DataError(f"{ds.name}: predict needs the image view of every sample")
        x = as_device_tensor(self._inputs(ds, views=[0])[0], next(self.net_.parameters()).device)
        return self._image_logits(x).argmax(1).cpu().numpy().astype(np.int64)
