"""DM2C: Deep Mixed-Modal Clustering (Jiang et al., NeurIPS 2019; the paper in ``dm2c.txt``).

Every sample shows one modality only (protocol ``mixed_modal``). Two modality-specific auto-encoders give
latent codes (eq. 1); two generators translate codes between the latent spaces under an l1 cycle loss
(eq. 2); two Wasserstein critics with clipped weights tell translated codes from real ones (eq. 3); the whole
objective is eq. (4), played as the min-max game of eq. (5) by Algorithm 1. Finally every sample is carried
into modality A's latent space and clustered there (Alg. 1 l.16-17).

Three layers, as in ``cigit_c.py``: the pure loss function ``dm2c_losses`` (each part of eqs. 1-4), the
network bundle ``_DM2CNets`` and the estimator ``DM2C``.

Modality A is the first view of the data set (the image), B the second (the text): Section 4 transforms all
samples "into modality A" because the image features are the more informative ones.

Reading of the paper, where it is silent or inconsistent (each also noted at its parameter):

* **Alg. 1 l.13-14 pair G_AB with L_adv^A** (and G_BA with L_adv^B): a typo. Eq. (3) and the text ("G_BA aims
  at fooling D_A") define L_adv^A through G_BA; we implement eq. (3): G_BA fools D_A, G_AB fools D_B.
* **Alg. 1 l.4 updates the auto-encoders "with Eq. (2)"**, but eq. (2) has no auto-encoder parameter. Read as
  eq. (1): the auto-encoder step minimises lambda_2 (L_rec^A + L_rec^B); the critics and generators see the
  auto-encoders' codes as fixed inputs (detached), which is also what the separate steps of Alg. 1 imply.
* **Norms, not element means.** Eq. (1) is the squared l2 norm of a sample's reconstruction error, eq. (2)
  the l1 norm of its cycle error; both are averaged over the samples of a batch. (The official code uses
  element means, ``F.mse_loss`` / ``F.l1_loss``: see ``schedule="official"``.)
* **What an iteration is.** One pass of Alg. 1's while-loop: a batch of A rows and a batch of B rows for the
  auto-encoder step (l.3-4), ``n_critic`` fresh pairs of batches for the critic steps (l.5-11), one more for
  the generator step (l.12-14). An epoch is ``ceil(max(n_A, n_B) / batch_size)`` iterations, so the
  generators take as many steps per epoch as the official code's (one per batch). Each modality has its own
  stream of random partitions (batches of fewer than 2 rows are skipped: BatchNorm needs 2).
* **n_critic = 5**, the WGAN default (Arjovsky et al., Algorithm 1); the paper names n_critics without a value.
* **Layers.** "Each fully-connected layer is followed with a batch normalization layer and a LeakyReLU layer
  with the negative slope 0.2" (Section 4.1) for the auto-encoders and generators; we keep the code layer,
  the reconstruction layer and the generators' output layer linear: a BatchNorm there would force every code
  dimension to unit variance and the reconstruction could not reach features of any range (the official code
  also leaves the code layer linear). The critics are Linear(latent, 32) -> LeakyReLU(0.2) -> Linear(32, 1),
  no BatchNorm ("32 -> 1"; the official code's critic exactly).
* **BatchNorm modes.** The critic and generator steps read the encoders in eval mode (running statistics:
  the same deterministic codes the final embedding uses). In the critic step the generators run in training
  mode (batch statistics, as in their own step) through a functional call on copied buffers, so a critic step
  leaves every generator and auto-encoder tensor, running statistics included, bit-identical. In the generator
  step the second pass of each cycle (G_BA on G_AB(z_a), G_AB on G_BA(z_b)) also runs on copied buffers, so a
  generator's running statistics describe the real codes it translates in the final embedding only.
* **Initialisation.** Xavier-uniform weights, zero biases (unstated; a choice), from the run's local generator;
  the critics' weights are clipped into [-c, c] once at the start, so they satisfy the constraint throughout.
* **Pre-training** (Alg. 1 l.1): each auto-encoder on its own rows with eq. (1), Adam (the official code's
  pre-training optimiser; the paper names none), ``pretrain_epochs = 200`` (the official README's pre-training
  commands, ``--n_epochs 200``), ``pretrain_lr = 1e-3`` (the paper's
  auto-encoder rate; the README pre-trains images at 1e-4 and texts at 1e-5). ``nets.pretrain_autoencoders``
  takes the element mean of eq. (1)'s squared error: the same minimiser, and Adam's steps do not depend on
  the loss's scale.
* **Optimisers**: RMSprop for the auto-encoder, critic and generator steps (Section 3, Alg. 1), with the
  paper's learning rates (Section 4.1/4.2).
* **Clustering** (Alg. 1 l.16-17): k-means (k-means++ seeding, Section 3 [4]) on the unified codes of the
  fitting rows; n_init 20, max_iter 1000, tol 5e-5 as the official code. ``predict`` assigns new samples to
  the nearest of these centroids (the official code's ``kmeans.predict`` on the test rows).
* **Train/test.** The paper says "30 %" test, but 1910/956 is one third; the official code splits with
  ``train_test_split(test_size=1/3, stratify=labels)`` (1/4 for NUS-WIDE). The harness follows the code's
  split; ``fit`` takes the training rows and ``predict`` the test rows.

``labels_`` are the k-means labels of the unified embedding (image rows Enc_A(x), text rows G_BA(Enc_B(x)),
Alg. 1 l.16-17), the labels the paper evaluates; with ``unify=False`` text rows stay Enc_B(x) (Table 4's
ablations, Section 4.3).

Variants (``VARIANTS``, the keys of ``dm2c.toml``): ``full``; ``no_uni`` (adversarial training, no final
translation: ``unify=False``); ``no_adv_no_uni`` (codes straight after pre-training, no translation);
``official_code`` (``schedule="official"``, the official repository's training loop, reported beside, never
instead of, the paper's reading). The official schedule (facts of jiangyangby/DM2C, ``code/model.py`` and
``code/utils.py``): one joint RMSprop step of auto-encoders and generators per batch on
rec + lambda_1 cyc + the input-space cycle reconstruction ``||x - Dec(G(G(Enc(x))))||^2`` + 0.5 x adversarial,
all as element means; the critics step once every 5 generator steps on that batch's detached codes; layers
Linear -> LeakyReLU -> BatchNorm, generators as small auto-encoders themselves, LeakyReLU outputs; the image
view PCA-reduced (fitted on the training image rows) to 2048 (Wikipedia) / 1000 (NUS-WIDE) dimensions, the
text PCA being commented out in ``utils.py``; learning rates of the README command (auto-encoders 1e-4,
generators 5e-4, critics 5e-5, no weight decay). Pre-training stays ours (the code's pre-training uses Adam
betas (0.5, 0.999) and per-modality rates 1e-4 / 1e-5, one rate here), and so do the batches (the code draws
128 mixed rows, here ``batch_size`` rows of each modality).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import ops
from ..data import DataError, MultiModalDataset
from ..runtime import resolve_device, seed_from, torch_generator
from .base import MultiModalClusterer
from .nets import (as_device_tensor, check_finite, clip_parameters_, kmeans_centers, minibatches, mlp,
                   pretrain_autoencoders, xavier_init_)

__all__ = ["DM2C", "dm2c_losses"]

_SCHEDULES = ("paper", "official")


# -- the math specific to DM2C (shared pieces come from mmclust.ops) ----------------------------------------
def _reconstruction(x, x_rec, elementwise):
    if elementwise:
        return F.mse_loss(x_rec, x)
    return (x - x_rec).pow(2).sum(1).mean()


def dm2c_losses(*, x_a=None, rec_a=None, x_b=None, rec_b=None, z_a=None, cyc_a=None, z_b=None, cyc_b=None,
                d_real_a=None, d_fake_a=None, d_real_b=None, d_fake_b=None, lambda_cyc=1.0, lambda_rec=1.0,
                elementwise=False) -> dict:
    """Each part of DM2C's objective from the networks' outputs, and their weighted sum, eq. (4).

    * ``rec_a``/``rec_b``: eq. (1), ``E ||x - Dec(Enc(x))||_2^2`` from ``x_*`` and its reconstruction ``rec_*``.
    * ``cyc_a``/``cyc_b``: eq. (2), ``E ||z_a - G_BA(G_AB(z_a))||_1`` from ``z_a`` and its cycle (likewise B).
    * ``adv_a``/``adv_b``: eq. (3), ``E D_A(z_a) - E D_A(G_BA(z_b))`` from the critic's scores on real and
      translated codes (likewise B with D_B and G_AB), ``ops.wasserstein_gap``.
    * ``total``: eq. (4), ``adv_a + adv_b + lambda_cyc (cyc_a + cyc_b) + lambda_rec (rec_a + rec_b)`` over the
      parts given (a part whose inputs are None is left out of the dict and of the sum).

    ``elementwise=True`` takes element means instead of per-sample norms for eqs. (1)-(2) (the official code).
    The critics maximise ``adv_*``; generators and auto-encoders minimise ``total`` (eq. 5).
    """
    parts = {}
    if x_a is not None:
        parts["rec_a"] = _reconstruction(x_a, rec_a, elementwise)
    if x_b is not None:
        parts["rec_b"] = _reconstruction(x_b, rec_b, elementwise)
    for name, z, back in (("cyc_a", z_a, cyc_a), ("cyc_b", z_b, cyc_b)):
        if z is not None:
            parts[name] = F.l1_loss(back, z) if elementwise else ops.l1_cycle(z, back)
    if d_real_a is not None:
        parts["adv_a"] = ops.wasserstein_gap(d_real_a, d_fake_a)
    if d_real_b is not None:
        parts["adv_b"] = ops.wasserstein_gap(d_real_b, d_fake_b)
    weights = {"rec_a": lambda_rec, "rec_b": lambda_rec, "cyc_a": lambda_cyc, "cyc_b": lambda_cyc, "adv_a": 1.0, "adv_b": 1.0}
    total = None
    for name, value in parts.items():
        term = weights[name] * value
        total = term if total is None else total + term
    parts["total"] = total if total is not None else torch.zeros(())
    return parts


def _frozen_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` in its current mode, on copies of its buffers: BatchNorm's running statistics stay untouched."""
    state = dict(module.named_parameters())
    state.update({name: b.clone() for name, b in module.named_buffers()})
    return torch.func.functional_call(module, state, (x,))


# -- networks --------------------------------------------------------------------------------------------------
def _official_stack(dims, last_activation: bool) -> nn.Sequential:
    """The official code's ``DeepAE`` half: Linear -> LeakyReLU(0.2) -> BatchNorm1d per hidden layer."""
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        last = i == len(dims) - 2
        if not last or last_activation:
            layers.append(nn.LeakyReLU(0.2))
        if not last:
            layers.append(nn.BatchNorm1d(b))
    return nn.Sequential(*layers)


def _official_autoencoder(input_dim: int, hiddens) -> tuple[nn.Sequential, nn.Sequential]:
    """Encoder (last layer linear) and decoder (LeakyReLU output) of the official ``DeepAE(input_dim, hiddens)``."""
    dims = [input_dim, *hiddens]
    return _official_stack(dims, last_activation=False), _official_stack(dims[::-1], last_activation=True)


class _DM2CNets(nn.Module):
    """Auto-encoders (Enc/Dec A and B), generators G_AB, G_BA and critics D_A, D_B of Fig. 1(a)."""

    def __init__(self, d_a: int, d_b: int, p):
        super().__init__()
        lat = p.latent_dim
        if p.schedule == "official":
            self.enc_a, self.dec_a = _official_autoencoder(d_a, [*p.image_hidden, lat])
            self.enc_b, self.dec_b = _official_autoencoder(d_b, [*p.text_hidden, lat])
            # the code's generators are auto-encoders themselves: latent -> [latent, *hidden, latent] -> latent
            self.g_ab = nn.Sequential(*_official_autoencoder(lat, [lat, *p.generator_hidden, lat]))
            self.g_ba = nn.Sequential(*_official_autoencoder(lat, [lat, *p.generator_hidden, lat]))
        else:
            self.enc_a = mlp([d_a, *p.image_hidden, lat], batchnorm=True, final_activation=False)
            self.dec_a = mlp([lat, *reversed(p.image_hidden), d_a], batchnorm=True, final_activation=False)
            self.enc_b = mlp([d_b, *p.text_hidden, lat], batchnorm=True, final_activation=False)
            self.dec_b = mlp([lat, *reversed(p.text_hidden), d_b], batchnorm=True, final_activation=False)
            self.g_ab = mlp([lat, *p.generator_hidden, lat], batchnorm=True, final_activation=False)
            self.g_ba = mlp([lat, *p.generator_hidden, lat], batchnorm=True, final_activation=False)
        self.d_a = mlp([lat, p.critic_hidden, 1], final_activation=False)  # judges codes in A's latent space
        self.d_b = mlp([lat, p.critic_hidden, 1], final_activation=False)

    def autoencoders(self):
        return [self.enc_a, self.dec_a, self.enc_b, self.dec_b]

    def generators(self):
        return [self.g_ab, self.g_ba]

    def critics(self):
        return [self.d_a, self.d_b]


def _params(modules):
    return [p for m in modules for p in m.parameters()]


class _BatchStream:
    """Endless index batches over ``n`` rows: successive random partitions (``nets.minibatches``), each batch >= 2 rows."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator, device):
        self.n, self.batch_size, self.gen, self.device = n, batch_size, gen, device
        self._queue = []

    def __next__(self) -> torch.Tensor:
        while not self._queue:
            self._queue = [b for b in minibatches(self.n, self.batch_size, self.gen, self.device) if b.numel() >= 2]
        return self._queue.pop(0)


class DM2C(MultiModalClusterer):
    """DM2C estimator for two-view (image, text) mixed-modal data; view 1 is modality A (the target space).

    Parameters (defaults are the paper's Wikipedia settings, Section 4.1; ``params_for_dataset`` gives the others)
    ----------
    n_clusters : int or None — k; None takes it from the data set.
    latent_dim : int, default 128 — code size of both auto-encoders (Section 4.1: 1024 -> 256 -> 128).
    image_hidden, text_hidden : tuples, default (1024, 256) — encoder hidden sizes (decoders mirror them).
    generator_hidden : tuple, default (256,) — G_AB, G_BA: 128 -> 256 -> 128 (Section 4.1).
    critic_hidden : int, default 32 — D_A, D_B: latent -> 32 -> 1 (Section 4.1).
    lambda_cyc, lambda_rec : float, default 1.0, 2.0 — lambda_1, lambda_2 of eq. (4) (Section 4.1).
    ae_lr, generator_lr, critic_lr : float, default 1e-3, 1e-4, 5e-5 — RMSprop rates (Section 4.1).
    clip : float, default 0.05 — critic weight range [-c, c], biases included (Section 4.1, Alg. 1 l.9-10).
    n_critic : int, default 5 — critic steps per generator step (Alg. 1 l.5); the WGAN default, unstated here.
    batch_size : int, default 64 — rows of each modality per batch; the official code's batches hold 128
        mixed rows, about 64 of each modality (the paper gives none).
    max_epochs : int, default 220 — adversarial epochs (official README command ``--n_epochs 220``).
    pretrain_epochs : int, default 200 — auto-encoder pre-training (official README pre-training commands).
    pretrain_lr : float, default 1e-3 — Adam rate of the pre-training (the paper's auto-encoder rate).
    adversarial : bool, default True — False skips Alg. 1 l.2-15 (Table 4's "no adv." rows).
    unify : bool, default True — carry B rows into A's space by G_BA before clustering (Table 4's "uni.").
    schedule : "paper" or "official" — Algorithm 1 as printed, or the official code's loop (module doc).
    elementwise : bool, default False — eqs. (1)-(2) as per-sample norms (the paper) or element means (the
        official code; the official schedule always uses them). Measured on wiki_sift_lda (seed 0, 60 epochs,
        training rows): with norms the cycle term outweighs the critic's signal, the translated text codes
        shrink (per-dimension std 1.06 against the image codes' 3.60), fall into 2 clusters and ACC is 0.19;
        scaling the cycle term as element means (lambda_cyc / latent_dim) gives std 2.77 and ACC 0.32.
    official_pca_dim : int, default 2048 — image PCA size of the official schedule (1000 for NUS-WIDE);
        capped by the view's size and rows. Unused by the paper schedule.
    kmeans_n_init, kmeans_max_iter, kmeans_tol : 20, 1000, 5e-5 — the official code's k-means.
    random_state, device, verbose : as everywhere in mmclust.

    Attributes: ``labels_`` (k-means on the unified codes), ``cluster_centers_`` (k, latent_dim),
    ``embedding_`` (n, latent_dim), ``history_`` (per-epoch losses and step counts), ``pretrain_history_``,
    ``nets_``, ``n_epochs_``.
    """

    N_VIEWS = 2  # exactly two views (image, text): a file's other views are left out, see RunSpec.data_options
    VARIANTS = {"full": {}, "no_uni": {"unify": False}, "no_adv_no_uni": {"adversarial": False, "unify": False},
                "official_code": {"schedule": "official"}}

    # string options as a scikit-learn constraints table (checked before a run starts; see mmclust.repro.validate)
    _parameter_constraints = {"schedule": [StrOptions(set(_SCHEDULES))]}

    def __init__(self, n_clusters=None, latent_dim=128, image_hidden=(1024, 256), text_hidden=(1024, 256),
                 generator_hidden=(256,), critic_hidden=32, lambda_cyc=1.0, lambda_rec=2.0, ae_lr=1e-3,
                 generator_lr=1e-4, critic_lr=5e-5, clip=0.05, n_critic=5, batch_size=64, max_epochs=220,
                 pretrain_epochs=200, pretrain_lr=1e-3, adversarial=True, unify=True, schedule="paper", elementwise=False,
                 official_pca_dim=2048, kmeans_n_init=20, kmeans_max_iter=1000, kmeans_tol=5e-5, random_state=None,
                 device="auto", verbose=False):
        self.n_clusters = n_clusters
        self.latent_dim = latent_dim
        self.image_hidden = image_hidden
        self.text_hidden = text_hidden
        self.generator_hidden = generator_hidden
        self.critic_hidden = critic_hidden
        self.lambda_cyc = lambda_cyc
        self.lambda_rec = lambda_rec
        self.ae_lr = ae_lr
        self.generator_lr = generator_lr
        self.critic_lr = critic_lr
        self.clip = clip
        self.n_critic = n_critic
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.adversarial = adversarial
        self.unify = unify
        self.schedule = schedule
        self.elementwise = elementwise
        self.official_pca_dim = official_pca_dim
        self.kmeans_n_init = kmeans_n_init
        self.kmeans_max_iter = kmeans_max_iter
        self.kmeans_tol = kmeans_tol
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    @classmethod
    def params_for_dataset(cls, name: str) -> dict:
        """The paper's per-data-set settings (Sections 4.1-4.2); scaled-down widths for stand-in features."""
        if name.startswith("wiki_vgg"):  # Section 4.1 = the constructor defaults
            return {}
        if name.startswith("nuswide10k"):  # Section 4.2: AE 512-256-128, G 128 -> 128, lambda_2 = 1, rates 5e-4 / 5e-5 / 5e-5
            return dict(image_hidden=(512, 256), text_hidden=(512, 256), generator_hidden=(), lambda_rec=1.0,
                        ae_lr=5e-4, generator_lr=5e-5, critic_lr=5e-5, official_pca_dim=1000)
        if name in ("wiki_roph", "wiki_sift_lda", "uci_digits", "scene15"):
            # stand-in features of 10-240 dimensions instead of 4096/5000: the paper's shape scaled down
            # (d -> 256 -> 64, G 64 -> 128 -> 64, critic 64 -> 16 -> 1 as the code's latent/4); the paper's other settings
            return dict(latent_dim=64, image_hidden=(256,), text_hidden=(256,), generator_hidden=(128,), critic_hidden=16)
        return {}

    # -- validation and inputs ---------------------------------------------------------------------------------
    def _validate(self, ds) -> int:
        self._check_dataset(ds, min_views=2)
        if len(ds.views) != 2:
            raise DataError(f"{ds.name}: DM2C takes exactly two views (image, text), got {list(ds.views)}")
        k = self._n_clusters(ds)
        if self.schedule not in _SCHEDULES:
            raise DataError(f"DM2C: schedule must be one of {_SCHEDULES}, got {self.schedule!r}")
        for name in ("lambda_cyc", "lambda_rec"):
            if not getattr(self, name) >= 0:
                raise DataError(f"DM2C: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("ae_lr", "generator_lr", "critic_lr", "pretrain_lr", "clip"):
            if not getattr(self, name) > 0:
                raise DataError(f"DM2C: {name} must be > 0, got {getattr(self, name)}")
        if self.batch_size < 2 or self.n_critic < 1 or self.max_epochs < 0 or self.pretrain_epochs < 0:
            raise DataError("DM2C: batch_size must be >= 2, n_critic >= 1, max_epochs and pretrain_epochs >= 0")
        for v in ds.views:
            if ds.present[v].sum() < 2:
                raise DataError(f"{ds.name}: view {v!r} is present in {ds.present[v].sum()} rows; DM2C needs at least 2 of each")
        return k

    def _check_fitted_views(self, ds) -> MultiModalDataset:
        self._check_dataset(ds, min_views=2)
        if not hasattr(self, "nets_"):
            raise DataError("DM2C: call fit before predict / embed")
        if tuple(ds.views) != self.view_names_ or tuple(ds.dims[v] for v in ds.views) != self.view_dims_:
            raise DataError(f"{ds.name}: views {ds.dims} differ from the fitted ones "
                            f"{dict(zip(self.view_names_, self.view_dims_))}")
        return ds

    def _inputs(self, ds, device, fit: bool):
        """Present rows of each view on the device (``x_a``, ``x_b``) and their row numbers.

        Absent rows are never read: they are selected away on the host before anything touches their values.
        The official schedule's image PCA is fitted here on the fitting rows and reused for new data.
        """
        out = []
        for i, v in enumerate(ds.views):
            rows = np.flatnonzero(ds.present[v])
            x = np.asarray(ds.views[v][rows], dtype=np.float64)
            if self.schedule == "official" and i == 0:
                if fit:
                    dim = int(min(self.official_pca_dim, x.shape[1], x.shape[0]))
                    mean = x.mean(0)
                    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
                    self.pca_ = (mean, vt[:dim].T)
                mean, comps = self.pca_
                x = (x - mean) @ comps
            out.append((as_device_tensor(x.astype(np.float32), device), torch.as_tensor(rows, device=device)))
        return out

    # -- the training procedure ------------------------------------------------------------------------------
    def fit(self, ds, y=None):
        ds = self._check_dataset(ds)  # a list / dict of arrays as views; sparse views densified
        k = self._validate(ds)
        seed = seed_from(self.random_state)
        device = resolve_device(self.device)
        gen = torch_generator(seed, device)
        self.view_names_ = tuple(ds.views)
        self.view_dims_ = tuple(ds.dims[v] for v in ds.views)
        (x_a, rows_a), (x_b, rows_b) = self._inputs(ds, device, fit=True)

        nets = _DM2CNets(x_a.shape[1], x_b.shape[1], self)
        xavier_init_(nets, torch_generator(seed, "cpu"))
        for critic in nets.critics():
            clip_parameters_(critic, self.clip)  # start inside the constraint set of Alg. 1 l.9-10
        nets.to(device)
        self.nets_ = nets

        # Alg. 1 l.1: pre-train each auto-encoder on its own rows with eq. (1)
        pairs = [(nets.enc_a, nets.dec_a, x_a, "image"), (nets.enc_b, nets.dec_b, x_b, "text")]
        self.pretrain_history_ = pretrain_autoencoders(pairs, self.pretrain_epochs, self.pretrain_lr, self.batch_size,
                                                       gen, device, desc="DM2C pretrain", verbose=self.verbose, min_batch=2)
        self.history_ = []
        if self.adversarial:
            if self.schedule == "official":
                self._train_official(x_a, x_b, gen, device)
            else:
                self._train_paper(x_a, x_b, gen, device)
        self.n_epochs_ = self.max_epochs if self.adversarial else 0

        # Alg. 1 l.16-17: every sample into A's latent space, then k-means
        z = self._embed_rows(ds.n_samples, x_a, rows_a, x_b, rows_b)
        check_finite(z, "unified embedding", self.n_epochs_)
        centers = kmeans_centers(z, k, self.kmeans_n_init, seed, max_iter=self.kmeans_max_iter, tol=self.kmeans_tol)
        self.cluster_centers_ = centers.cpu().numpy()
        self.embedding_ = z.cpu().numpy()
        self.labels_ = ops.squared_distances(z, centers).argmin(1).cpu().numpy().astype(np.int64)
        return self

    def _optimizers(self):
        nets = self.nets_
        return (torch.optim.RMSprop(_params(nets.autoencoders()), lr=self.ae_lr),
                torch.optim.RMSprop(_params(nets.critics()), lr=self.critic_lr),
                torch.optim.RMSprop(_params(nets.generators()), lr=self.generator_lr))

    @torch.no_grad()
    def _codes(self, x_a, x_b):
        """The auto-encoders' codes in eval mode (fixed inputs of the critic and generator steps)."""
        nets = self.nets_
        nets.enc_a.eval()
        nets.enc_b.eval()
        return nets.enc_a(x_a), nets.enc_b(x_b)

    def _ae_step(self, x_a, x_b, opt) -> dict:
        """Alg. 1 l.4 read as eq. (1): auto-encoders minimise lambda_2 (L_rec^A + L_rec^B); nothing else moves."""
        nets = self.nets_
        for m in nets.autoencoders():
            m.train()
        parts = dm2c_losses(x_a=x_a, rec_a=nets.dec_a(nets.enc_a(x_a)), x_b=x_b, rec_b=nets.dec_b(nets.enc_b(x_b)),
                            lambda_rec=self.lambda_rec, elementwise=self.elementwise)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()
        return parts

    def _critic_step(self, x_a, x_b, opt) -> dict:
        """Alg. 1 l.7-10: D_A, D_B ascend eq. (3) on fixed codes and translations, then clip every parameter."""
        nets = self.nets_
        z_a, z_b = self._codes(x_a, x_b)
        with torch.no_grad():
            for g in nets.generators():
                g.train()
            fake_a, fake_b = _frozen_forward(nets.g_ba, z_b), _frozen_forward(nets.g_ab, z_a)
        parts = dm2c_losses(d_real_a=nets.d_a(z_a), d_fake_a=nets.d_a(fake_a), d_real_b=nets.d_b(z_b), d_fake_b=nets.d_b(fake_b))
        loss = -(parts["adv_a"] + parts["adv_b"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for critic in nets.critics():
            clip_parameters_(critic, self.clip)
        return parts

    def _generator_step(self, x_a, x_b, opt) -> dict:
        """Alg. 1 l.13-14 with eq. (3)'s pairing: G_BA fools D_A, G_AB fools D_B, both under eq. (2)'s cycle loss."""
        nets = self.nets_
        z_a, z_b = self._codes(x_a, x_b)
        for g in nets.generators():
            g.train()
        fake_b, fake_a = nets.g_ab(z_a), nets.g_ba(z_b)
        # the way back runs on batch statistics without feeding the running ones: those describe the real codes
        # each generator translates in the final embedding (Alg. 1 l.16), not translated codes
        back_a, back_b = _frozen_forward(nets.g_ba, fake_b), _frozen_forward(nets.g_ab, fake_a)
        parts = dm2c_losses(z_a=z_a, cyc_a=back_a, z_b=z_b, cyc_b=back_b,
                            d_real_a=nets.d_a(z_a), d_fake_a=nets.d_a(fake_a), d_real_b=nets.d_b(z_b), d_fake_b=nets.d_b(fake_b),
                            lambda_cyc=self.lambda_cyc, elementwise=self.elementwise)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward(inputs=_params(nets.generators()))  # the critics are the other player: no gradient
        opt.step()
        return parts

    def _train_paper(self, x_a, x_b, gen, device) -> None:
        """Algorithm 1 l.2-15: per iteration one auto-encoder step, n_critic critic steps, one generator step."""
        opt_ae, opt_d, opt_g = self._optimizers()
        stream_a = _BatchStream(x_a.shape[0], self.batch_size, gen, device)
        stream_b = _BatchStream(x_b.shape[0], self.batch_size, gen, device)
        n_iter = math.ceil(max(x_a.shape[0], x_b.shape[0]) / self.batch_size)

        def batch():
            return x_a[next(stream_a)], x_b[next(stream_b)]

        for epoch in tqdm(range(self.max_epochs), desc="DM2C", disable=not self.verbose, unit="epoch"):
            sums = {key: torch.zeros((), device=device) for key in ("reconstruction", "critic_gap", "cycle", "generator")}
            steps = {"ae_steps": 0, "critic_steps": 0, "generator_steps": 0}
            for _ in range(n_iter):
                rec = self._ae_step(*batch(), opt_ae)
                steps["ae_steps"] += 1
                sums["reconstruction"] += (rec["rec_a"] + rec["rec_b"]).detach()
                for _ in range(self.n_critic):
                    d = self._critic_step(*batch(), opt_d)
                    steps["critic_steps"] += 1
                    sums["critic_gap"] += (d["adv_a"] + d["adv_b"]).detach() / self.n_critic
                g = self._generator_step(*batch(), opt_g)
                steps["generator_steps"] += 1
                sums["cycle"] += (g["cyc_a"] + g["cyc_b"]).detach()
                sums["generator"] += g["total"].detach()
            self._log_epoch(epoch, sums, n_iter, **steps)

    def _log_epoch(self, epoch, sums, n_iter, **counts) -> None:
        row = {"epoch": epoch, **{f"{key}_loss": float(v) / n_iter for key, v in sums.items()}, **counts}
        for key, v in row.items():
            if key.endswith("_loss"):
                check_finite(torch.tensor(v), f"DM2C {key}", epoch)
        self.history_.append(row)

    def _train_official(self, x_a, x_b, gen, device) -> None:
        """The official code's loop (``MultimodalGAN.train``): one joint AE+G step per batch, critics every 5th."""
        nets = self.nets_
        # official README command: --lr_g 1e-4 (auto-encoder group) --lr_ae 5e-4 (generator group) --lr_d 5e-5
        # --weight_decay 0 --lamda3 0.5 --lamda1 1; the critic update frequency is 5 (update_d_freq)
        opt_g = torch.optim.RMSprop([{"params": _params(nets.autoencoders())},
                                     {"params": _params(nets.generators()), "lr": 5e-4}], lr=1e-4)
        opt_d = torch.optim.RMSprop(_params(nets.critics()), lr=5e-5)
        adv_weight, d_every = 0.5, 5
        stream_a = _BatchStream(x_a.shape[0], self.batch_size, gen, device)
        stream_b = _BatchStream(x_b.shape[0], self.batch_size, gen, device)
        n_iter = math.ceil(max(x_a.shape[0], x_b.shape[0]) / self.batch_size)
        step = 0
        for epoch in tqdm(range(self.max_epochs), desc="DM2C (official)", disable=not self.verbose, unit="epoch"):
            sums = {key: torch.zeros((), device=device) for key in ("reconstruction", "critic_gap", "cycle", "generator")}
            n_d = 0
            for _ in range(n_iter):
                xa, xb = x_a[next(stream_a)], x_b[next(stream_b)]
                nets.train()
                z_a, z_b = nets.enc_a(xa), nets.enc_b(xb)
                fake_b, fake_a = nets.g_ab(z_a), nets.g_ba(z_b)
                back_a, back_b = nets.g_ba(fake_b), nets.g_ab(fake_a)
                parts = dm2c_losses(x_a=xa, rec_a=nets.dec_a(z_a), x_b=xb, rec_b=nets.dec_b(z_b), z_a=z_a, cyc_a=back_a,
                                    z_b=z_b, cyc_b=back_b, lambda_cyc=self.lambda_cyc, lambda_rec=1.0, elementwise=True)
                cycle_rec = F.mse_loss(nets.dec_a(back_a), xa) + F.mse_loss(nets.dec_b(back_b), xb)
                fool = -nets.d_a(fake_a).mean() - nets.d_b(fake_b).mean()
                loss = parts["total"] + cycle_rec + adv_weight * fool
                opt_g.zero_grad(set_to_none=True)
                loss.backward(inputs=_params(nets.autoencoders()) + _params(nets.generators()))
                opt_g.step()
                sums["reconstruction"] += (parts["rec_a"] + parts["rec_b"]).detach()
                sums["cycle"] += (parts["cyc_a"] + parts["cyc_b"]).detach()
                sums["generator"] += loss.detach()
                step += 1
                if step % d_every == 0:
                    d = dm2c_losses(d_real_a=nets.d_a(z_a.detach()), d_fake_a=nets.d_a(fake_a.detach()),
                                    d_real_b=nets.d_b(z_b.detach()), d_fake_b=nets.d_b(fake_b.detach()))
                    opt_d.zero_grad(set_to_none=True)
                    (-adv_weight * (d["adv_a"] + d["adv_b"])).backward()
                    opt_d.step()
                    for critic in nets.critics():
                        clip_parameters_(critic, self.clip)
                    sums["critic_gap"] += (d["adv_a"] + d["adv_b"]).detach()
                    n_d += 1
            if n_d:
                sums["critic_gap"] = sums["critic_gap"] * n_iter / n_d
            self._log_epoch(epoch, sums, n_iter, ae_steps=n_iter, critic_steps=n_d, generator_steps=n_iter)

    # -- embedding and prediction ------------------------------------------------------------------------------
    @torch.no_grad()
    def _embed_rows(self, n, x_a, rows_a, x_b, rows_b) -> torch.Tensor:
        """Alg. 1 l.16: A rows Enc_A(x); B rows G_BA(Enc_B(x)) (Enc_B(x) with ``unify=False``); eval mode.

        A sample with both views present (not the mixed-modal setting) is represented by its A view.
        """
        nets = self.nets_
        nets.eval()
        z = torch.zeros(n, self.latent_dim, device=x_a.device, dtype=x_a.dtype)
        if rows_b.numel():
            z_b = nets.enc_b(x_b)
            z = z.index_put((rows_b,), nets.g_ba(z_b) if self.unify else z_b)
        if rows_a.numel():
            z = z.index_put((rows_a,), nets.enc_a(x_a))
        return z

    def embed(self, ds) -> np.ndarray:
        """The unified codes ``(n, latent_dim)`` of the samples of ``ds`` (the space ``labels_`` cluster)."""
        ds = self._check_fitted_views(ds)
        device = next(self.nets_.parameters()).device
        (x_a, rows_a), (x_b, rows_b) = self._inputs(ds, device, fit=False)
        return self._embed_rows(ds.n_samples, x_a, rows_a, x_b, rows_b).cpu().numpy()

    def predict(self, ds) -> np.ndarray:
        """Nearest fitted centroid of each sample's unified code (the official code's ``kmeans.predict`` on test rows)."""
        z = torch.as_tensor(self.embed(ds))
        return ops.squared_distances(z, torch.as_tensor(self.cluster_centers_)).argmin(1).numpy().astype(np.int64)
