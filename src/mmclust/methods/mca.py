"""MCA: Multi-level Cross-modal Alignment for image clustering (Qiu et al., AAAI 2024; the paper in ``mca.txt``).

Inputs are frozen CLIP embeddings: images ``u_i`` (the data set's first view) and WordNet nouns ``v_t`` (CLIP
text embeddings of "A photo of a {t}"), which are not per-sample and so come in the data set's ``context``
(``noun_embeddings`` (m, d), ``noun_offsets`` (m,), and the hypernym edges ``hypernym_child`` /
``hypernym_parent`` as synset offsets; see ``mmclust.data.registry`` for the files).

Three layers, as in the other methods: pure functions (``uniqueness_scores``, ``uniqueness_filter``,
``hierarchy_filter``, ``semantic_space``, ``semantic_pseudo_labels``, ``mca_losses``), the networks (``_MCANets``:
the heads f_I, f_S and the attention f_A), and the estimator ``MCA``. Shared math comes from :mod:`mmclust.ops`
(``entropy``, ``neighbour_consistency``, ``info_nce``, ``soft_prototypes``, ``topk_neighbours``).

The objective (eq. 8) is ``L = L_I + lambda_a L_A`` with ``L_A = L_ia + lambda_pa L_pa + lambda_sa L_sa`` (eq. 7):

* ``L_I`` (eq. 1): ``-mean log q_i^T q_j`` with ``j`` drawn from the ``k_I`` nearest images of ``i``, plus the
  balance term on the batch mean ``q_bar``.
* ``L_ia`` (eq. 2): ``q_i^T p_j / tau_ia`` contrasted over the other texts ``l != j``, ``j`` drawn from the
  ``k_S`` nearest texts of image ``i``.
* ``L_pa`` (eq. 3): image prototypes ``h^I_l = sum_i q_il u_i / ||q_l||_1`` against text prototypes (the mean of
  the ``k_p`` neighbours of the word nearest each image prototype), temperature ``tau_pa``.
* ``L_sa`` (eqs. 4-6): ``p'_i`` = attention-weighted ``p`` of the image's ``k_S`` nearest texts (weights
  ``softmax_j((W^I u_i)^T W^S v_j)``), ``q'_i = one-hot(argmax p'_i)``, loss ``CE(q_i, q'_i)``.

Choices (the paper gives no settings; "SIC" = its predecessor, Cai et al. 2023, whose code MCA builds on):

* From SIC: ViT-B/32 (d = 512), eta = 5, k_I = 20, gamma_r = 500, rho_u = 0.05 (SIC's uniqueness score
  ``1 - cos(v_t, mean of all nouns)``), k_p = 30, Adam lr 1e-4 with weight decay 1e-4, batch 128, 100 epochs.
* Guesses (the paper names the symbols, not their values): k_S = 5, gamma_h = 1, tau_ia = tau_pa = 0.1,
  lambda_a = lambda_pa = lambda_sa = 1 (Fig. 6 varies them around 1), f_I = f_S = Linear(d, c) + softmax (SIC's
  cluster head), W^I = W^S = I at initialisation, heads Xavier-initialised from the run's own generator.
* Embeddings are L2-normalised before everything (CLIP's similarities are cosines; SIC normalises too).
* k-means for the uniqueness filter's image centres: scikit-learn, ``kmeans_n_init = 10`` restarts (unstated).

Ambiguities (default first; the alternative as a variant where cheap):

1. Eq. (1) as printed adds ``+eta H(q_bar)``, which rewards collapse: the loss here adds ``-eta H(q_bar)``, as
   SIC does (the ``balance`` part is lowest for a uniform ``q_bar``).
2. Eq. (3)'s denominator pairs ``(h^I_l, h^S_l)``, which would not involve ``j`` at all: read as the cross pairs
   ``(h^I_j, h^S_l)``, ``l != j`` (``ops.info_nce`` on the c x c score matrix).
3. Eq. (5)'s argmax gives W^I and W^S no gradient: the literal reading is the default, and W^I, W^S then stay at
   their initialisation (they get no gradient and no optimiser step, so weight decay does not shrink them with no loss
   to oppose it). Variant ``soft_semantic_target`` uses ``CE(q, p')`` so the attention learns.
4. Prototypes are soft means recomputed at the start of each epoch without gradient (the paper's formula), not
   SIC's hard means of the 90 % most confident images.
5. Uniqueness filter: the gamma_r nearest nouns of each centre *among the nouns with uniqueness > rho_u* (the
   paper's wording), not SIC's top-gamma_r-then-intersect.
6. Hierarchy filter: the root is excluded, each image's nearest noun (in W_c) contributes every synset on all of
   its hypernym paths (union) that lies below level gamma_h and is in W_c; synsets are identified by offset.
7. The split is unstated and SIC early-stops on test ACC (a label leak, left out): fit on all images
   (transductive), labels of the last epoch.

``labels_`` = argmax of ``q = f_I(u)`` after the last epoch (the paper: the image classification network's
assignment). Nothing in ``fit`` reads labels: k comes from ``n_clusters`` or the data set's class count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import ops
from ..data import DataError, MultiModalDataset
from ..data.wordnet import max_depths, parents_of
from ..runtime import resolve_device, seed_from, torch_generator
from .base import MultiModalClusterer
from .nets import as_device_tensor, check_finite, kmeans_centers, minibatches, xavier_init_

__all__ = ["MCA", "mca_losses", "semantic_space", "uniqueness_scores", "uniqueness_filter", "hierarchy_filter",
           "semantic_pseudo_labels", "SemanticSpace", "CONTEXT_KEYS"]

CONTEXT_KEYS = ("noun_embeddings", "noun_offsets", "hypernym_child", "hypernym_parent")
_TARGETS = ("hard", "soft")


# -- semantic space construction (Section "Semantic Space Construction") ------------------------------------
def uniqueness_scores(nouns: torch.Tensor) -> torch.Tensor:
    """SIC's uniqueness of each noun: ``1 - cos(v_t, mean_t' v_t')`` (generic nouns sit near the mean)."""
    return 1.0 - F.cosine_similarity(nouns, nouns.mean(0, keepdim=True), dim=1)


def uniqueness_filter(centres: torch.Tensor, nouns: torch.Tensor, gamma_r: int, rho_u: float,
                      chunk_size: int = 4096) -> np.ndarray:
    """W_c: the union over image centres of the ``gamma_r`` nouns nearest (cosine) each centre, searched among the
    nouns whose uniqueness exceeds ``rho_u`` (ambiguity 5); all of those when fewer than ``gamma_r`` are unique.
    Returns sorted row indices into ``nouns``."""
    unique = torch.nonzero(uniqueness_scores(nouns) > rho_u).squeeze(1)
    if unique.numel() == 0:
        raise DataError(f"MCA: no noun has uniqueness > rho_u={rho_u}; lower rho_u")
    k = min(int(gamma_r), int(unique.numel()))
    near = ops.topk_neighbours(centres, nouns[unique], k, chunk_size=chunk_size)
    return np.unique(unique[near.reshape(-1)].cpu().numpy())


def hierarchy_filter(nearest_offsets, candidate_offsets, parents: dict, gamma_h: int) -> np.ndarray:
    """T: for each image's nearest noun, the synsets on its hypernym paths (itself included) that are candidates
    (in W_c) and lie below the top ``gamma_h`` levels under the root (the root, level 0, always goes).

    A synset at longest distance ``D`` from the root sits at level ``D`` of some path through it, so it survives iff
    ``D > gamma_h`` (``wordnet.max_depths``). ``nearest_offsets`` may repeat. Returns sorted unique offsets.
    Example: entity -> animal -> mammal -> {dog, cat}, W_c = {animal, mammal, dog, cat, rock}, gamma_h = 1, images
    nearest dog and cat: T = {mammal, dog, cat}.
    """
    candidates = {int(o) for o in np.asarray(candidate_offsets).tolist()}
    on_paths: set = set()
    for o in np.unique(np.asarray(nearest_offsets, dtype=np.int64)).tolist():  # one walk per distinct noun, not per image
        seen, todo = {o}, [o]
        while todo:
            for p in parents.get(todo.pop(), ()):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        on_paths |= seen
    keep = on_paths & candidates
    depth = max_depths(sorted(keep), parents)
    return np.asarray(sorted(o for o in keep if depth[o] > gamma_h), dtype=np.int64)


@dataclass(frozen=True)
class SemanticSpace:
    """Row indices into the noun list: ``candidates`` (W_c, after the uniqueness filter) and ``words`` (T)."""

    candidates: np.ndarray
    words: np.ndarray


def semantic_space(images: torch.Tensor, nouns: torch.Tensor, noun_offsets, parents: dict | None, n_clusters: int,
                   gamma_r: int = 500, rho_u: float = 0.05, gamma_h: int = 1, hierarchy: bool = True, seed: int = 0,
                   kmeans_n_init: int = 10, chunk_size: int = 4096) -> SemanticSpace:
    """W_c by the uniqueness filter around k-means image centres, then T by the hierarchy filter (or T = W_c).

    ``images`` (n, d) and ``nouns`` (m, d) are L2-normalised embeddings; ``noun_offsets`` (m,) the nouns' synsets.
    Label-free: it sees the image embeddings and k only.
    """
    centres = kmeans_centers(images, n_clusters, kmeans_n_init, seed)
    cand = uniqueness_filter(centres, nouns, gamma_r, rho_u, chunk_size)
    if not hierarchy:
        return SemanticSpace(cand, cand)
    if parents is None:
        raise DataError("MCA: the hierarchy filter needs the WordNet hypernym edges (context 'hypernym_child', "
                        "'hypernym_parent'); or use hierarchy_filter=False")
    offsets = np.asarray(noun_offsets, dtype=np.int64)
    nearest = cand[ops.topk_neighbours(images, nouns[torch.as_tensor(cand, device=nouns.device)], 1,
                                       chunk_size=chunk_size).squeeze(1).cpu().numpy()]
    kept = hierarchy_filter(offsets[nearest], offsets[cand], parents, gamma_h)
    words = cand[np.isin(offsets[cand], kept)]
    return SemanticSpace(cand, words)


# -- the losses (eqs. 1-8) ----------------------------------------------------------------------------
def semantic_pseudo_labels(p_prime: torch.Tensor) -> torch.Tensor:
    """``q'_i = one-hot(c, argmax_l p'_il)``, eq. (5): a float one-hot matrix with no gradient."""
    return F.one_hot(p_prime.detach().argmax(1), p_prime.shape[1]).to(p_prime.dtype)


def mca_losses(q: torch.Tensor, q_nb: torch.Tensor, p: torch.Tensor | None = None, pos_text: torch.Tensor | None = None,
               proto_q: torch.Tensor | None = None, proto_p: torch.Tensor | None = None,
               p_prime: torch.Tensor | None = None, *, eta: float = 5.0, tau_ia: float = 0.1, tau_pa: float = 0.1,
               lambda_a: float = 1.0, lambda_pa: float = 1.0, lambda_sa: float = 1.0,
               semantic_target: str = "hard") -> dict:
    """MCA's objective, eq. (8), with its parts. Any alignment term whose inputs are None is dropped (0).

    * ``consistency`` = ``ops.neighbour_consistency(q, q_nb)`` and ``balance`` = ``-eta H(q_bar)`` (ambiguity 1);
      ``image`` = their sum, L_I of eq. (1). ``q``, ``q_nb``: (b, c) assignments of a batch and of one drawn
      neighbour of each.
    * ``instance`` = L_ia, eq. (2): ``ops.info_nce(q p^T / tau_ia, pos_text)``; ``p`` (t, c) the assignments of all
      words of T, ``pos_text`` (b,) the drawn neighbour word of each image.
    * ``prototype`` = L_pa, eq. (3): ``ops.info_nce(proto_q proto_p^T / tau_pa, arange(c))``; ``proto_q`` = f_I of
      the c image prototypes, ``proto_p`` = f_S of the c text prototypes (ambiguity 2).
    * ``semantic`` = L_sa, eq. (6): ``CE(q, q')`` with ``q' = semantic_pseudo_labels(p_prime)`` (``"hard"``), or
      ``CE(q, p')`` (``"soft"``: the gradient reaches W^I and W^S). ``p_prime`` (b, c) from eq. (4).
    * ``alignment`` = L_A (eq. 7); ``total`` = L_I + lambda_a L_A (eq. 8).
    """
    if semantic_target not in _TARGETS:
        raise ValueError(f"semantic_target must be one of {_TARGETS}, got {semantic_target!r}")
    zero = q.new_zeros(())
    consistency = ops.neighbour_consistency(q, q_nb)
    balance = -eta * ops.entropy(q.mean(0))
    instance = zero if p is None else ops.info_nce(q @ p.T / tau_ia, pos_text)
    prototype = zero
    if proto_q is not None:
        prototype = ops.info_nce(proto_q @ proto_p.T / tau_pa, torch.arange(proto_q.shape[0], device=q.device))
    semantic = zero
    if p_prime is not None:
        target = semantic_pseudo_labels(p_prime) if semantic_target == "hard" else p_prime
        semantic = -(target * torch.log(q.clamp_min(torch.finfo(q.dtype).tiny))).sum(1).mean()
    image = consistency + balance
    alignment = instance + lambda_pa * prototype + lambda_sa * semantic
    return {"total": image + lambda_a * alignment, "image": image, "consistency": consistency, "balance": balance,
            "alignment": alignment, "instance": instance, "prototype": prototype, "semantic": semantic}


# -- networks -----------------------------------------------------------------------------------------
class _MCANets(nn.Module):
    """f_I and f_S (Linear(d, c) + softmax) and the attention f_A of eq. (4) with W^I, W^S (d x d, identity at init)."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.image_head = nn.Linear(d, k)
        self.text_head = nn.Linear(d, k)
        self.w_image = nn.Parameter(torch.eye(d))
        self.w_text = nn.Parameter(torch.eye(d))

    def q(self, u: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.image_head(u), 1)

    def p(self, v: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.text_head(v), 1)

    def attention(self, u: torch.Tensor, v_nb: torch.Tensor) -> torch.Tensor:
        """Eq. (4)'s weights ``softmax_j((W^I u_i)^T W^S v_j)`` over each image's neighbour words: (b, k_S)."""
        # (W^I u)^T (W^S v) = ((W^I u)^T W^S) v: two (b, d) x (d, d) products instead of one per neighbour word
        qi = (u @ self.w_image.T) @ self.w_text
        return torch.softmax((v_nb * qi[:, None, :]).sum(-1), dim=1)

    def semantic_assignment(self, u: torch.Tensor, v_nb: torch.Tensor, p_nb: torch.Tensor) -> torch.Tensor:
        """``p'_i = sum_j a_ij p_j``, eq. (4); ``v_nb`` (b, k_S, d), ``p_nb`` (b, k_S, c)."""
        return (self.attention(u, v_nb)[:, :, None] * p_nb).sum(1)


# -- the estimator --------------------------------------------------------------------------------------
class MCA(MultiModalClusterer):
    """MCA estimator on image embeddings (first view) with a noun vocabulary in the data set's ``context``.

    Parameters (SIC's where MCA builds on it, else a stated guess; see the module doc)
    ----------
    n_clusters : int or None — c; None takes it from the data set.
    gamma_r : int, default 500 — nouns kept per image centre (SIC).
    rho_u : float, default 0.05 — uniqueness threshold (SIC's gamma_u).
    hierarchy_filter : bool, default True — the hierarchy-based filter; False is Table 2's "UF only".
    gamma_h : int, default 1 — top levels below the root dropped by the hierarchy filter (guess).
    k_image : int, default 20 — k_I image neighbours (SIC).
    k_text : int, default 5 — k_S neighbour words (guess; Fig. 5 varies it).
    k_proto : int, default 30 — k_p words averaged into a text prototype (SIC's neighbour count; Fig. 5). k_S and
        k_p above |T| are errors; at k_p = |T| every text prototype is the mean of all words and L_pa is constant.
    eta : float, default 5 — balance weight (SIC's entropy weight).
    tau_ia, tau_pa : float, default 0.1 — temperatures of eqs. (2), (3) (guess).
    lambda_a, lambda_pa, lambda_sa : float, default 1 — weights of eqs. (7), (8) (guess; Fig. 6 around 1).
    instance_alignment, prototype_alignment, semantic_alignment : bool — the three terms of L_A (Table 3).
    semantic_target : {"hard", "soft"}, default "hard" — eq. (5) literally, or CE(q, p') (ambiguity 3).
    lr : float, default 1e-4; weight_decay : float, default 1e-4 — Adam (SIC).
    batch_size : int, default 128; max_epochs : int, default 100 (SIC).
    kmeans_n_init : int, default 10 — restarts of the k-means that places the uniqueness filter's centres.
    chunk_size : int, default 4096 — rows per block in the nearest-neighbour searches (memory, not results).
    random_state, device, verbose : as everywhere in mmclust.

    Attributes: ``labels_``, ``cluster_probabilities_`` (n, c), ``history_`` (per epoch: the loss parts),
    ``semantic_space_`` (:class:`SemanticSpace`, indices into the context's nouns), ``n_words_`` (|T|),
    ``nets_``, ``fitted_dims_``.
    """

    VARIANTS = {
        "full": {},
        "uniqueness_and_hierarchy_filter": {},  # Table 2's "UF + HF" row: the full semantic space
        "uniqueness_filter_only": {"hierarchy_filter": False},
        "image_consistency_only": {"instance_alignment": False, "prototype_alignment": False, "semantic_alignment": False},
        "no_instance_alignment": {"instance_alignment": False},
        "no_prototype_alignment": {"prototype_alignment": False},
        "no_semantic_alignment": {"semantic_alignment": False},
        "soft_semantic_target": {"semantic_target": "soft"},
    }

    def __init__(self, n_clusters=None, gamma_r=500, rho_u=0.05, hierarchy_filter=True, gamma_h=1, k_image=20,
                 k_text=5, k_proto=30, eta=5.0, tau_ia=0.1, tau_pa=0.1, lambda_a=1.0, lambda_pa=1.0, lambda_sa=1.0,
                 instance_alignment=True, prototype_alignment=True, semantic_alignment=True, semantic_target="hard",
                 lr=1e-4, weight_decay=1e-4, batch_size=128, max_epochs=100, kmeans_n_init=10, chunk_size=4096,
                 random_state=None, device="auto", verbose=False):
        self.n_clusters = n_clusters
        self.gamma_r = gamma_r
        self.rho_u = rho_u
        self.hierarchy_filter = hierarchy_filter
        self.gamma_h = gamma_h
        self.k_image = k_image
        self.k_text = k_text
        self.k_proto = k_proto
        self.eta = eta
        self.tau_ia = tau_ia
        self.tau_pa = tau_pa
        self.lambda_a = lambda_a
        self.lambda_pa = lambda_pa
        self.lambda_sa = lambda_sa
        self.instance_alignment = instance_alignment
        self.prototype_alignment = prototype_alignment
        self.semantic_alignment = semantic_alignment
        self.semantic_target = semantic_target
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.kmeans_n_init = kmeans_n_init
        self.chunk_size = chunk_size
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # -- validation --------------------------------------------------------------------------------
    def _validate(self, ds) -> tuple[int, dict]:
        self._check_dataset(ds)
        image = list(ds.views)[0]
        if not ds.present[image].all():
            raise DataError(f"{ds.name}: MCA needs the image embedding of every sample (view {image!r})")
        k = self._n_clusters(ds)
        ctx = getattr(ds, "context", None) or {}
        need = CONTEXT_KEYS if self.hierarchy_filter else CONTEXT_KEYS[:2]
        missing = [key for key in need if key not in ctx]
        if missing:
            raise DataError(f"{ds.name}: MCA needs the noun vocabulary in the data set's context, missing {missing} "
                            f"(an mca_* data set loads them from wordnet_nouns_clip_vitb32.npz and data.noun)")
        nouns = np.asarray(ctx["noun_embeddings"])
        if nouns.ndim != 2 or nouns.shape[1] != ds.dims[image] or nouns.shape[0] < 2:
            raise DataError(f"{ds.name}: noun_embeddings must be (m >= 2, {ds.dims[image]}) like the image view, "
                            f"got {nouns.shape}")
        offsets = np.asarray(ctx["noun_offsets"])
        if offsets.shape != (nouns.shape[0],):
            raise DataError(f"{ds.name}: noun_offsets must have one offset per noun ({nouns.shape[0]})")
        if not np.issubdtype(offsets.dtype, np.integer) or np.unique(offsets).size != offsets.size:
            raise DataError(f"{ds.name}: noun_offsets must be distinct integer synset offsets (one noun per synset)")
        zero = np.flatnonzero(~(np.linalg.norm(nouns, axis=1) > 0))
        if zero.size:
            raise DataError(f"{ds.name}: {zero.size} noun embedding(s) are all zeros (row {zero[0]}): no direction to compare")
        zero = np.flatnonzero(~(np.linalg.norm(np.asarray(ds.views[image]), axis=1) > 0))
        if zero.size:
            raise DataError(f"{ds.name}: {zero.size} image embedding(s) are all zeros (row {zero[0]}): no direction to compare")
        if self.hierarchy_filter:
            child, parent = np.asarray(ctx["hypernym_child"]), np.asarray(ctx["hypernym_parent"])
            if (child.ndim != 1 or child.shape != parent.shape or not np.issubdtype(child.dtype, np.integer)
                    or not np.issubdtype(parent.dtype, np.integer)):
                raise DataError(f"{ds.name}: hypernym_child and hypernym_parent must be integer offsets of equal "
                                f"length (one edge each), got {child.dtype} {child.shape} and {parent.dtype} {parent.shape}")
            # a noun outside the graph would read as a root and always be filtered out, whatever the images say
            outside = np.setdiff1d(offsets, np.concatenate([child, parent]))
            if outside.size:
                raise DataError(f"{ds.name}: {outside.size} noun offset(s) are not in the hypernym graph, e.g. "
                                f"{int(outside[0]):08d} (offsets and data.noun disagree)")
        if self.semantic_target not in _TARGETS:
            raise DataError(f"MCA: semantic_target must be one of {_TARGETS}, got {self.semantic_target!r}")
        ints = {"gamma_r": 1, "k_image": 1, "k_text": 1, "k_proto": 1, "batch_size": 2, "kmeans_n_init": 1,
                "chunk_size": 1, "gamma_h": 0, "max_epochs": 0}
        bad = [name for name, lo in ints.items() if isinstance(getattr(self, name), bool)
               or not isinstance(getattr(self, name), (int, np.integer)) or not getattr(self, name) >= lo]
        reals = {"lr": 0, "tau_ia": 0, "tau_pa": 0, "weight_decay": None, "eta": None, "lambda_a": None,
                 "lambda_pa": None, "lambda_sa": None, "rho_u": None}  # 0: must be > 0; None: >= 0
        for name, lo in reals.items():
            x = getattr(self, name)
            if (isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not np.isfinite(x)
                    or not (x > 0 if lo == 0 else x >= 0)):
                bad.append(name)
        if bad:
            raise DataError(f"MCA: invalid settings {bad} (need integers gamma_r, k_*, kmeans_n_init, chunk_size >= 1, "
                            "batch_size >= 2, gamma_h, max_epochs >= 0; finite reals lr, tau_ia, tau_pa > 0 and "
                            "weight_decay, eta, lambda_*, rho_u >= 0)")
        if self.k_image >= ds.n_samples:
            raise DataError(f"{ds.name}: k_image={self.k_image} needs more than {self.k_image} images")
        return k, ctx

    # -- the training procedure ----------------------------------------------------------------------
    def fit(self, ds, y=None):
        k, ctx = self._validate(ds)
        seed = seed_from(self.random_state)
        device = resolve_device(self.device)
        image = list(ds.views)[0]
        u = F.normalize(as_device_tensor(ds.views[image], device), dim=1)
        nouns = F.normalize(as_device_tensor(ctx["noun_embeddings"], device), dim=1)
        parents = parents_of(ctx["hypernym_child"], ctx["hypernym_parent"]) if self.hierarchy_filter else None
        space = semantic_space(u, nouns, ctx["noun_offsets"], parents, k, self.gamma_r, self.rho_u, self.gamma_h,
                               self.hierarchy_filter, seed, self.kmeans_n_init, self.chunk_size)
        if space.words.size < 2:
            raise DataError(f"{ds.name}: the semantic space kept {space.words.size} word(s); MCA needs at least 2 "
                            f"(lower gamma_h or rho_u, or raise gamma_r)")
        self.semantic_space_, self.n_words_ = space, int(space.words.size)
        v = nouns[torch.as_tensor(space.words, device=device)]
        too_many = [f"{name}={val}" for name, val in (("k_text", self.k_text), ("k_proto", self.k_proto))
                    if val > v.shape[0]]
        if too_many:  # an error, not a silent cap that would change the method behind the setting
            raise DataError(f"{ds.name}: {', '.join(too_many)} exceed(s) the {v.shape[0]} words the semantic space kept "
                            f"(lower them, or keep more words: raise gamma_r, lower gamma_h or rho_u)")
        k_text, k_proto = self.k_text, self.k_proto
        nb_image = ops.topk_neighbours(u, u, self.k_image, self.chunk_size, exclude_self=True)
        nb_text = ops.topk_neighbours(u, v, k_text, self.chunk_size)

        gen = torch_generator(seed, "cpu")
        nets = _MCANets(u.shape[1], k)
        xavier_init_(nets, gen)  # on CPU: the same init on any device; W^I, W^S keep their identity init
        nets = nets.to(device)
        self.nets_ = nets
        learn_attention = self.semantic_alignment and self.semantic_target == "soft"
        for w in (nets.w_image, nets.w_text):
            w.requires_grad_(learn_attention)  # eq. (5)'s argmax gives them no gradient (ambiguity 3)
        opt = torch.optim.Adam([p for p in nets.parameters() if p.requires_grad], lr=self.lr,
                               weight_decay=self.weight_decay)
        batch_gen = torch_generator(seed + 1, device)  # minibatch order and neighbour draws
        self.history_ = []
        for epoch in tqdm(range(self.max_epochs), desc="MCA", disable=not self.verbose, unit="epoch"):
            nets.train()
            proto_inputs = self._prototype_inputs(u, v, k_proto) if self.prototype_alignment else None
            sums: dict = {}
            batches = [b for b in minibatches(u.shape[0], self.batch_size, batch_gen, device) if b.numel() >= 2]
            for idx in batches:
                parts = self._batch_losses(u, v, idx, nb_image, nb_text, proto_inputs, batch_gen)
                opt.zero_grad(set_to_none=True)
                parts["total"].backward()
                opt.step()
                for key, val in parts.items():
                    sums[key] = sums.get(key, 0.0) + val.detach()
            row = {key: float(val) / len(batches) for key, val in sums.items()}  # one host sync per epoch
            check_finite(torch.tensor(row["total"]), "MCA loss", epoch)
            self.history_.append({"epoch": epoch, "total_loss": row.pop("total"), **row})
        self.n_epochs_ = self.max_epochs
        self.fitted_dims_ = dict(ds.dims)
        self.cluster_probabilities_ = self._q(u).cpu().numpy()
        self.labels_ = self.cluster_probabilities_.argmax(1).astype(np.int64)
        return self

    def _draw(self, neighbours: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``rn(N(x_i))``: one neighbour drawn uniformly per row of the batch."""
        col = torch.randint(neighbours.shape[1], (idx.numel(),), generator=gen, device=gen.device).to(idx.device)
        return neighbours[idx, col]

    @torch.no_grad()
    def _prototype_inputs(self, u: torch.Tensor, v: torch.Tensor, k_proto: int) -> tuple:
        """Image prototypes ``h^I`` (soft means of u under the current q) and text prototypes ``h^S`` (mean of the
        k_p words nearest the word nearest each h^I), both held fixed for the epoch (ambiguity 4)."""
        self.nets_.eval()
        h_image = ops.soft_prototypes(self.nets_.q(u), u)
        word = ops.topk_neighbours(h_image, v, 1, self.chunk_size).squeeze(1)
        h_text = v[ops.topk_neighbours(v[word], v, k_proto, self.chunk_size)].mean(1)
        self.nets_.train()
        return h_image, h_text

    def _batch_losses(self, u, v, idx, nb_image, nb_text, proto_inputs, gen) -> dict:
        nets = self.nets_
        q = nets.q(u[idx])
        q_nb = nets.q(u[self._draw(nb_image, idx, gen)])
        need_p = self.instance_alignment or self.semantic_alignment
        p = nets.p(v) if need_p else None
        pos = self._draw(nb_text, idx, gen) if self.instance_alignment else None
        proto_q = proto_p = None
        if proto_inputs is not None:
            proto_q, proto_p = nets.q(proto_inputs[0]), nets.p(proto_inputs[1])
        p_prime = None
        if self.semantic_alignment:
            nb = nb_text[idx]
            p_prime = nets.semantic_assignment(u[idx], v[nb], p[nb])
        return mca_losses(q, q_nb, p if self.instance_alignment else None, pos, proto_q, proto_p, p_prime,
                          eta=self.eta, tau_ia=self.tau_ia, tau_pa=self.tau_pa, lambda_a=self.lambda_a,
                          lambda_pa=self.lambda_pa, lambda_sa=self.lambda_sa, semantic_target=self.semantic_target)

    @torch.no_grad()
    def _q(self, u: torch.Tensor) -> torch.Tensor:
        self.nets_.eval()
        return self.nets_.q(u)

    def embed(self, ds) -> np.ndarray:
        """``q = f_I(u)`` for the images of ``ds``: (n, c) cluster probabilities."""
        ds = self._check_fitted_for(ds)
        image = list(ds.views)[0]
        if not ds.present[image].all():
            raise DataError(f"{ds.name}: MCA needs the image embedding of every sample")
        u = F.normalize(as_device_tensor(ds.views[image], next(self.nets_.parameters()).device), dim=1)
        return self._q(u).cpu().numpy()

    def predict(self, ds) -> np.ndarray:
        """Argmax of ``f_I(u)`` for new images (each row on its own)."""
        return self.embed(ds).argmax(1).astype(np.int64)
