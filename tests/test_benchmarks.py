"""pytest-benchmark timings (run with `tox -e bench` or `pytest -m benchmark --benchmark-enable`).

In the default run timing is disabled and each benchmarked function runs once, as a smoke test.
"""

import os
import time

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from mmclust import metrics, ops

from .work_floor import KINDS, UPDATES, multiply_adds, record_calls, replay, split

pytestmark = pytest.mark.benchmark

# The FLOP-bound epoch benchmarks run on this device (``MMCLUST_BENCH_DEVICE``, default the CPU); on a GPU every timer
# stops after the device has finished (torch.cuda.synchronize), not when the host has queued the work.
BENCH_DEVICE_ENV = "MMCLUST_BENCH_DEVICE"


@pytest.fixture(scope="module")
def bench_device() -> torch.device:
    return bench_device_from(os.environ.get(BENCH_DEVICE_ENV, ""))


def bench_device_from(name: str) -> torch.device:
    """The device ``MMCLUST_BENCH_DEVICE`` names (empty: the CPU); a skip naming what is missing when it is CUDA on a
    machine without it, a usage error for anything else that is not a CPU or a CUDA device."""
    name = name.strip() or "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f"{BENCH_DEVICE_ENV}={name!r} is not a torch device ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{BENCH_DEVICE_ENV}={name} but CUDA is not available to this torch build")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise pytest.UsageError(f"{BENCH_DEVICE_ENV}={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise pytest.UsageError(f"{BENCH_DEVICE_ENV}={name!r}: the benchmarks time 'cpu' or 'cuda' devices")
    return device


def _synchronise(device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, whose operations return when done)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _on_device_finish(fn, device):
    """``fn`` followed by a device synchronisation, so that a timer around it measures the work, not its queueing."""
    if torch.device(device).type == "cpu":
        return fn

    def synchronised(*args, **kwargs):
        out = fn(*args, **kwargs)
        _synchronise(device)
        return out

    return synchronised


@pytest.fixture(scope="module")
def million_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1_000_000)
    p = np.where(rng.random(y.size) < 0.2, rng.integers(0, 10, y.size), y)
    return y, p


@pytest.mark.parametrize("name", ["acc", "nmi", "ari", "f_score", "purity"])
def test_bench_metric_1e6(benchmark, million_labels, name):
    y, p = million_labels
    value = benchmark(getattr(metrics, name), y, p)
    assert 0.5 < value <= 1.0


def _best_of(*fns, repeat: int = 15, device="cpu") -> list[float]:
    """Shortest of ``repeat`` timings of each function (the least disturbed by other load), in seconds.

    The functions take turns, so a burst of load on a shared machine hits them alike. On a GPU ``device`` each timing
    starts and stops on a synchronised device.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            _synchronise(device)
            t = time.perf_counter()
            fn()
            _synchronise(device)
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def test_timers_wait_for_a_gpu_and_leave_the_cpu_alone(monkeypatch):
    """On a CUDA device every timing starts and stops on a synchronised device (that device): the clock is read after
    a synchronisation at both ends; the wrapped function's result comes back; on the CPU nothing is added."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("sync", str(device))))
    clock = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: calls.append("clock") or clock())

    def work():
        calls.append("work")
        return 42

    assert _on_device_finish(work, "cuda:1")() == 42
    assert calls == ["work", ("sync", "cuda:1")]
    calls.clear()
    _best_of(work, repeat=2, device="cuda:1")
    assert calls == [("sync", "cuda:1"), "clock", "work", ("sync", "cuda:1"), "clock"] * 2
    calls.clear()
    assert _on_device_finish(work, "cpu") is work
    _best_of(work, repeat=2, device="cpu")
    assert calls == ["clock", "work", "clock"] * 2


def test_bench_device_from_the_environment(monkeypatch):
    assert bench_device_from("") == torch.device("cpu") == bench_device_from(" cpu ")
    with pytest.raises(pytest.UsageError, match="not a torch device"):
        bench_device_from("gpu0")
    with pytest.raises(pytest.UsageError, match="'cpu' or 'cuda'"):
        bench_device_from("meta")
    if not torch.cuda.is_available():
        with pytest.raises(pytest.skip.Exception, match="CUDA is not available"):
            bench_device_from("cuda")
    else:
        assert bench_device_from("cuda").type == "cuda"
    # a machine with one GPU: its index 0 is taken, an index beyond it is named as the problem
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert bench_device_from("cuda:0") == torch.device("cuda:0")
    with pytest.raises(pytest.UsageError, match="has 1 CUDA device"):
        bench_device_from("cuda:7")


@pytest.mark.parametrize("n_classes,n_clusters", [(10, 10), (100, 100), (100, 1000)])
def test_bench_evaluate_1e6_vs_bound(benchmark, n_classes, n_clusters):
    """evaluate() on 10^6 labels against the bound: one bincount contingency plus the Hungarian matching.

    Records ``ratio_to_bound`` (evaluate / bound, both best-of-15 in this run) and, with timing enabled,
    ``sklearn_chain_over_evaluate``: scikit-learn's NMI, ARI, pair confusion and contingency + Hungarian
    called one after another. Nothing about absolute time is asserted.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 1_000_000)
    p = np.where(rng.random(y.size) < 0.2, rng.integers(0, n_clusters, y.size), y % n_clusters)

    def bound():
        w = np.bincount(p * n_classes + y, minlength=n_clusters * n_classes).reshape(n_clusters, n_classes)
        return linear_sum_assignment(w, maximize=True)

    def sklearn_chain():
        normalized_mutual_info_score(y, p)
        adjusted_rand_score(y, p)
        pair_confusion_matrix(y, p)
        linear_sum_assignment(contingency_matrix(p, y), maximize=True)

    out = benchmark(metrics.evaluate, y, p)
    assert 0.5 < out["acc"] <= 1.0
    t_eval, t_bound = _best_of(lambda: metrics.evaluate(y, p), bound)
    benchmark.extra_info.update(bound_s=t_bound, evaluate_s=t_eval, ratio_to_bound=t_eval / t_bound)
    if not benchmark.disabled:  # a second each: only when timing is asked for
        benchmark.extra_info["sklearn_chain_over_evaluate"] = _best_of(sklearn_chain, repeat=2)[0] / t_eval


@pytest.fixture(scope="module")
def assignments():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(100_000, 10, generator=g)
    c = torch.randn(10, 10, generator=g)
    return z, c, ops.student_t_assignment(z, c), torch.softmax(torch.randn(100_000, 10, generator=g), 1)


def test_bench_student_t(benchmark, assignments):
    z, c, _, _ = assignments
    q = benchmark(ops.student_t_assignment, z, c)
    assert q.shape == (100_000, 10)


def test_bench_target_distribution(benchmark, assignments):
    q = assignments[2]
    assert benchmark(ops.target_distribution, q).shape == q.shape


def test_bench_kl_jsd(benchmark, assignments):
    _, _, q, r = assignments
    out = benchmark(lambda: (ops.kl_divergence(q, r), ops.js_divergence(q, r)))
    assert all(torch.isfinite(v) for v in out)


def test_bench_align_and_sinkhorn(benchmark, assignments):
    _, _, q, r = assignments
    perm, s = benchmark(lambda: (ops.align_clusters(q, r), ops.sinkhorn(q.log(), n_iter=3)))
    assert sorted(perm.tolist()) == list(range(10)) and s.shape == q.shape


def test_bench_iic(benchmark, assignments):
    _, _, q, r = assignments
    assert torch.isfinite(benchmark(ops.iic_mutual_information, q, r))


def test_bench_cigit_c_epoch_bdgp(benchmark, load_real):
    """One CIGIT-C training epoch on BDGP at 50 % missing (plus its k-means init; no pre-training)."""
    from mmclust.data import incomplete
    from mmclust.methods.cigit_c import CIGITC

    ds = incomplete(load_real("bdgp"), 0.5, 0)
    model = CIGITC(max_epochs=1, pretrain_epochs=0, gan_pretrain_epochs=0, kmeans_n_init=1, random_state=0, device="cpu")
    # The first fit of a process also compiles the minibatch layer's kernels (seconds, more with a cold on-disk cache):
    # recorded apart, so the timed rounds (and the comparison with a saved run) see the steady state either way.
    start = time.perf_counter()
    model.fit(ds)
    benchmark.extra_info["first_fit_s"] = time.perf_counter() - start
    fitted = benchmark.pedantic(model.fit, args=(ds,), rounds=3, iterations=1)
    assert len(fitted.history_) == 1


def test_bench_jecl_epoch_10k(benchmark):
    """One JECL epoch on 10,000 pairs of (2048, 300) features (plus its k-means init; no pre-training)."""
    from mmclust.data import MultiModalDataset
    from mmclust.methods.jecl import JECL

    rng = np.random.default_rng(0)
    labels = np.arange(10_000) % 10
    centres = rng.normal(size=(10, 2048 + 300)).astype(np.float32)
    x = centres[labels] + rng.normal(size=(10_000, 2048 + 300)).astype(np.float32)
    ds = MultiModalDataset({"image": x[:, :2048], "text": x[:, 2048:]}, labels, name="bench10k")
    model = JECL(pretrain_epochs=0, max_epochs=1, kmeans_n_init=1, update_interval=10_000, random_state=0, device="cpu")
    fitted = benchmark.pedantic(model.fit, args=(ds,), rounds=2, iterations=1)
    assert fitted.n_iter_ == 40  # 10,000 / 256 batches


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def torch_threads(request):
    """Run the benchmark with this many torch threads (restored afterwards). The FLOP-bound ratios are recorded at
    one thread, how ``reproduce`` runs each of its concurrent runs on the CPU by default, and at two."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


# Side of the square matmuls that measure a device's rate: 512 reaches the CPU's peak (within 3 % of 256-2048 on the
# 2-core development machine); a GPU needs larger products to leave kernel launches out of the rate.
BOUND_SIZE = {"cpu": 512, "cuda": 4096}


def _repeats(benchmark) -> int:
    """Timings per function for a recorded ratio: best of 3, or 1 when timing is off (the smoke run records no time
    worth reading, and CI should not pay for three)."""
    return 1 if getattr(benchmark, "disabled", False) else 3


def _record_ratio_to_flop_bound(benchmark, epoch, macs: int, device="cpu") -> None:
    """Time ``epoch`` against the same number of multiply-adds done as square float32 matmuls on ``device`` (the
    machine's rate, same run), and record both and their ratio in the benchmark's extra_info."""
    device = torch.device(device)
    size = BOUND_SIZE[device.type]
    n_mm = max(1, round(macs / size**3))
    bound = _square_products(n_mm, size, device)
    t_epoch, t_products = _best_of(epoch, bound, repeat=_repeats(benchmark), device=device)
    # the products' rate applied to the epoch's exact multiply-adds: on a GPU one 4096-square product can be more work
    # than a whole epoch (DEC: 2.3x), so the product count alone would overstate the bound
    t_bound = square_matmul_seconds(t_products, n_mm, macs, size)
    benchmark.extra_info.update(multiply_adds=macs, epoch_s=t_epoch, bound_s=t_bound, ratio_to_flop_bound=t_epoch / t_bound,
                                bound_products=n_mm, bound_products_s=t_products, **_precision_record(device, size))


def _square_products(n: int, size: int = 512, device="cpu"):
    """A function that does ``n`` size x size float32 matmuls on ``device`` (the rate the bounds are measured at)."""
    a = torch.randn(size, size, device=device)

    def products():
        for _ in range(n):
            torch.mm(a, a)

    return products


def _precision_record(device: torch.device, size: int) -> dict:
    """What the rate was measured on: the device, the matmul size, torch's float32 matmul precision (``"high"`` lets
    CUDA use TF32 for the bound and the epoch alike, several times the full-precision rate) and CPU threads."""
    record = dict(device=str(device), bound_matmul_size=size, float32_matmul_precision=torch.get_float32_matmul_precision(),
                  torch_threads=torch.get_num_threads())
    if device.type == "cuda":
        record.update(device_name=torch.cuda.get_device_name(device), allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return record


def test_the_flop_bound_is_the_epochs_multiply_adds_at_the_products_rate():
    """However many square products are timed, ``bound_s`` is their rate applied to the epoch's multiply-adds."""
    from types import SimpleNamespace

    for macs in (int(0.44 * 512**3), 3 * 512**3 + 12345):
        bench = SimpleNamespace(extra_info={})
        _record_ratio_to_flop_bound(bench, lambda: None, macs, "cpu")
        info = bench.extra_info
        assert info["bound_products"] == max(1, round(macs / 512**3))
        assert info["bound_s"] == pytest.approx(info["bound_products_s"] * macs / (info["bound_products"] * 512**3), rel=1e-12)
        assert info["ratio_to_flop_bound"] == pytest.approx(info["epoch_s"] / info["bound_s"], rel=1e-12)
        assert info["device"] == "cpu" and info["bound_matmul_size"] == 512


def _linear_multiply_adds(modules, rows: int) -> int:
    """Multiply-adds of one training pass (forward + backward) of every Linear layer over ``rows`` rows, the
    ``modules`` chained in order (an encoder, then its decoder).

    Forward a*b per row; backward a*b for the weight gradient and a*b for the input gradient, except in the first
    layer of the chain, whose input is data and needs no gradient.
    """
    layers = [m for net in modules for m in net.modules() if isinstance(m, torch.nn.Linear)]
    return sum(layer.in_features * layer.out_features * (2 if i == 0 else 3) * rows for i, layer in enumerate(layers))


def test_bench_dec_autoencoder_epoch_vs_flop_bound(benchmark, load_real, torch_threads, bench_device):
    """One DEC / JECL auto-encoder pre-training epoch on BDGP (concatenated views, d-500-500-2000-10 and back).

    The bound is a chain of square float32 matmuls with the epoch's multiply-adds, timed in the same run;
    ``ratio_to_flop_bound`` = epoch / bound goes to ``extra_info`` (nothing asserted about time).
    """
    from mmclust.methods.base import select_view, view_means
    from mmclust.methods.dec import build_autoencoder
    from mmclust.methods.nets import as_device_tensor, pretrain_autoencoders, xavier_init_
    from mmclust.runtime import torch_generator

    ds = load_real("bdgp")
    x = as_device_tensor(select_view(ds, "concat", view_means(ds)), bench_device)
    enc, dec = build_autoencoder(x.shape[1])
    xavier_init_(enc, torch_generator(0))
    xavier_init_(dec, torch_generator(1))
    enc, dec = enc.to(bench_device), dec.to(bench_device)
    gen = torch_generator(0, bench_device)

    def epoch():
        return pretrain_autoencoders([(enc, dec, x, "")], 1, 1e-3, 256, gen, bench_device, corruption=0.2)

    epoch = _on_device_finish(epoch, bench_device)
    # one round first, untimed: on a GPU it pays for the library's set-up and the memory pool, not the epoch
    history = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    assert np.isfinite(history[0]["_reconstruction"])
    macs = _linear_multiply_adds([enc, dec], x.shape[0])
    _record_ratio_to_flop_bound(benchmark, epoch, macs, bench_device)
    _record_ratio_to_floor(benchmark, epoch, macs, bench_device)


def _record_ratio_to_floor(benchmark, epoch, macs: int, device="cpu") -> None:
    """Split the epoch's distance from the FLOP bound in two (:mod:`tests.work_floor`): the floor, the epoch's own
    matrix products, optimiser updates and minibatch-layer distances replayed back to back (``products_s`` +
    ``updates_s`` + ``pairwise_s`` = ``floor_s``: what the BLAS makes of these shapes, what updating every parameter
    costs, what the layer's fused kernels take), and everything else (``ratio_to_floor`` = epoch / floor: activations,
    normalisation, masks, noise, autograd, Python). ``floor_to_flop_bound`` is the least ``ratio_to_flop_bound`` this
    implementation's sequence of operations can reach on the machine.

    Recording runs one more epoch (under a dispatch mode); its products must be the ``macs`` the bound counts."""
    calls, _ = record_calls(epoch)
    recorded = multiply_adds(split(calls)["products"])
    # the recording is the epoch the bound counts: within the minibatch layer's L1 terms, which are not products
    assert abs(recorded / macs - 1) < 0.05, (recorded, macs)
    parts = floor_seconds(calls, device, _repeats(benchmark), also=epoch)
    t_epoch = parts.pop("also")
    floor = sum(parts.values())
    benchmark.extra_info.update(**{f"{kind}_s": t for kind, t in parts.items()}, floor_s=floor, ratio_to_floor=t_epoch / floor,
                                floor_to_flop_bound=floor / benchmark.extra_info["bound_s"], recorded_multiply_adds=recorded)


def floor_seconds(calls, device="cpu", repeat: int = 3, also=None) -> dict:
    """Seconds of each kind of recorded work (``products``, ``updates``, ``pairwise``) replayed back to back on
    ``device``, best of ``repeat``, the kinds taking turns; ``also``, a function timed in the same turns (the epoch
    itself), under the key ``"also"``."""
    kinds = split(calls)
    substitutes = minibatch_kernel_substitutes(device) if kinds["pairwise"] else {}
    fns = [replay(kinds[kind], substitutes=substitutes) for kind in KINDS]
    for fn in fns:
        fn()  # untimed: a kernel's first call with new shapes compiles, even when only one timing is asked for
    times = _best_of(*fns, *([also] if also else []), repeat=repeat, device=device)
    return dict(zip([*KINDS, "also"], times))


def minibatch_kernel_substitutes(device) -> dict:
    """For a replay: the minibatch layer's fused kernels, standing in for the cdist calls its eager path was recorded
    making, on the batches the run gives them (the CPU, at least ``FUSED_MIN_ROWS`` rows); none where the run itself
    uses cdist (another device, kernels off or failed)."""
    from mmclust.methods.nets import FUSED_MIN_ROWS, fused_closeness, fused_kernels_state, l1_closeness

    kernels = fused_closeness() if torch.device(device).type == "cpu" else None
    if kernels is None:
        return {}
    # one batch through the layer itself: where the kernels cannot be built it falls back to cdist (with its warning),
    # as the run does, and so does the replay
    l1_closeness(torch.rand(1, FUSED_MIN_ROWS, 1, requires_grad=True)).sum().backward()
    if fused_kernels_state() != "on":
        return {}
    aten = torch.ops.aten

    def forward(args, kwargs):
        m = args[0]
        if m.shape[1] < FUSED_MIN_ROWS:
            return lambda: aten._cdist_forward.default(*args, **kwargs)
        mt = m.transpose(1, 2).contiguous()
        return lambda: kernels[0](mt)

    def backward(args, kwargs):
        weight, m, _, _, dist = args
        if m.shape[1] < FUSED_MIN_ROWS:
            return lambda: aten._cdist_backward.default(*args, **kwargs)
        mt, near, grad = m.transpose(1, 2).contiguous(), torch.exp(-dist), weight[:, :, 0].contiguous()
        return lambda: kernels[1](mt, near, grad)

    return {aten._cdist_forward.default: forward, aten._cdist_backward.default: backward}


def test_linear_multiply_adds_equal_torchs_count_of_a_pretraining_epoch():
    """The auto-encoder count against torch's own FLOP counter over one real pre-training epoch (an oracle
    independent of both the counter and the product list above, which could share one wrong assumption)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmclust.methods.dec import build_autoencoder
    from mmclust.methods.nets import pretrain_autoencoders
    from mmclust.runtime import torch_generator

    x = torch.randn(150, 12, generator=torch.Generator().manual_seed(0))
    enc, dec = build_autoencoder(12)
    counter = FlopCounterMode(display=False)
    with counter:
        pretrain_autoencoders([(enc, dec, x, "")], 1, 1e-3, 64, torch_generator(0), "cpu", corruption=0.2)
    assert counter.get_total_flops() == 2 * _linear_multiply_adds([enc, dec], 150)


def _layer_shapes(net) -> list[tuple[int, int]]:
    """``(in, out)`` of every matmul layer of ``net`` in forward order: Linear layers and the minibatch layer's T."""
    from mmclust.methods.nets import MinibatchDiscrimination

    shapes = []
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            shapes.append((m.in_features, m.out_features))
        elif isinstance(m, MinibatchDiscrimination):
            shapes.append(tuple(m.T.shape))
    return shapes


def _pass_multiply_adds(net, rows: int, train: bool, input_grad: bool = False) -> int:
    """Multiply-adds of ``rows`` rows through ``net``'s matmul layers: a*b per row forward; in training also a*b
    for the weight gradient and a*b for the input gradient, except the first layer's when its input needs none."""
    total = 0
    for i, (a, b) in enumerate(_layer_shapes(net)):
        total += a * b * rows * ((3 if i or input_grad else 2) if train else 1)
    return total


def cigit_c_epoch_multiply_adds(nets, n_img: int, n_txt: int, n_batches: int) -> int:
    """Multiply-adds of one CIGIT-C epoch (``_train_epoch``) from the layer shapes, over the rows with each view.

    Targets: encoders and generators forward on every present row. Encoder step: encoders trained, generators
    forward (the fakes of eq. 9). GAN step: encoders forward; generators trained; each discriminator sees its fakes
    once (D1: n_img, D2: n_txt rows) and is backpropagated through twice: for the generators (input gradients,
    a*b per layer, the first layer included) and for itself (weight gradients, a*b per layer, plus again the input
    gradients of every layer above the first, which carry eq. (8)'s gradient down to them); its real rows
    (D1: n_txt, D2: n_img) are trained with detached inputs. The minibatch layer's L1 distances (16 kernels x 8 dims per pair of a batch) count once
    forward and once per backward pass (fakes: two, reals: one); a batch of r rows over the epoch's batches has
    about r^2 / n_batches pairs in all.
    """
    def disc(d, fakes, reals):
        forward = _pass_multiply_adds(d, fakes, False)
        fakes_cost = _pass_multiply_adds(d, fakes, True, input_grad=True) + _pass_multiply_adds(d, fakes, True) - 2 * forward
        return fakes_cost + _pass_multiply_adds(d, reals, True) + _minibatch_l1_multiply_adds(d, fakes, reals, n_batches)

    total = 0
    for enc, gen, rows in ((nets.enc_img, nets.g12, n_img), (nets.enc_txt, nets.g21, n_txt)):
        total += _pass_multiply_adds(enc, rows, True) + 2 * _pass_multiply_adds(enc, rows, False)
        total += _pass_multiply_adds(gen, rows, True) + 2 * _pass_multiply_adds(gen, rows, False)
    return total + disc(nets.d1, n_img, n_txt) + disc(nets.d2, n_txt, n_img)


def _minibatch_l1_multiply_adds(d, fakes: int, reals: int, n_batches: int) -> int:
    """A discriminator's minibatch-layer L1 terms over an epoch (see :func:`cigit_c_epoch_multiply_adds`)."""
    return int(d.minibatch.n_kernels * d.minibatch.kernel_dim * (3 * fakes * fakes + 2 * reals * reals) / n_batches)


def cigit_c_epoch_matmul_multiply_adds(nets, n_img: int, n_txt: int, n_batches: int) -> int:
    """:func:`cigit_c_epoch_multiply_adds` without the minibatch layer's L1 terms: the matrix products alone, what
    torch's FlopCounterMode counts."""
    l1 = (_minibatch_l1_multiply_adds(nets.d1, n_img, n_txt, n_batches)
          + _minibatch_l1_multiply_adds(nets.d2, n_txt, n_img, n_batches))
    return cigit_c_epoch_multiply_adds(nets, n_img, n_txt, n_batches) - l1


def test_cigit_c_multiply_adds_count_by_hand():
    """The counter on a tiny bundle, against multiply-adds written out layer by layer."""
    from types import SimpleNamespace

    from mmclust.methods.cigit_c import _CIGITCNets

    p = SimpleNamespace(image_hidden=(4,), text_hidden=(3,), latent_dim=2, noise_dim=6, generator12_hidden=(5,),
                        generator21_hidden=(7,), discriminator1_hidden=4, discriminator2_hidden=3)
    nets = _CIGITCNets(10, 6, 2, p)
    ni, nt, nb = 8, 6, 2
    enc = lambda dims, r: (2 * dims[0] * dims[1] + 3 * sum(a * b for a, b in zip(dims[1:-1], dims[2:]))) * r + \
        2 * r * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    expected = enc((10, 4, 2), ni) + enc((6, 3, 2), nt) + enc((8, 5, 2), ni) + enc((8, 7, 2), nt)

    def d(h, fakes, reals_rows):  # [code 2 + q 2] -> h -> T (h x 128) -> [h + 16] -> h -> 1
        layers = [(4, h), (h, 128), (h + 16, h), (h, 1)]
        fwd = sum(a * b for a, b in layers)
        # forward, input gradients (generators' pass), weight gradients and the input gradients above the first
        # layer (discriminators' pass)
        fakes_seen_once = (4 * fwd - layers[0][0] * layers[0][1]) * fakes
        reals = (2 * layers[0][0] * layers[0][1] + 3 * (fwd - layers[0][0] * layers[0][1])) * reals_rows
        return fakes_seen_once + reals + int(16 * 8 * (3 * fakes**2 + 2 * reals_rows**2) / nb)

    expected += d(4, ni, nt) + d(3, nt, ni)
    assert cigit_c_epoch_multiply_adds(nets, ni, nt, nb) == expected


def untrained_cigit_c(ds, params: dict, device="cpu"):
    """A CIGIT-C fitted on ``ds`` with ``params`` and no epoch of any phase (initial centroids only), and what its epoch
    methods read: ``(model, (x_img, x_txt, rows, present), optimisers)``, the data on ``device``."""
    from mmclust.methods.cigit_c import CIGITC, _device_views

    model = CIGITC(**{**params, **dict.fromkeys(RUN_PHASES, 0), "device": str(device)}).fit(ds)
    x_img, x_txt, rows = _device_views(ds, device)
    present = [np.asarray(ds.present[v], bool) for v in ds.views]
    return model, (x_img, x_txt, rows, present), model._optimizers()


def small_cigit_c_epochs(ds, **params):
    """``(model, rows, epoch)``: a CIGIT-C on ``ds`` initialised without training (small networks unless ``params``
    say otherwise) and ``epoch(gen)``, a function that runs one training epoch (``_train_epoch``) with ``gen``."""
    from mmclust.methods.nets import EpochLosses

    small = dict(latent_dim=8, image_hidden=(32, 32), text_hidden=(16, 16), generator12_hidden=(32, 16),
                 generator21_hidden=(32, 32), discriminator1_hidden=16, discriminator2_hidden=32, noise_dim=20,
                 batch_size=64, kmeans_n_init=1, random_state=0)
    model, data, opts = untrained_cigit_c(ds, {**small, **params})
    return model, data[2], lambda gen: (lambda: model._train_epoch(0, *data, gen, opts, EpochLosses()))


def test_cigit_c_multiply_adds_match_torchs_count_of_an_epoch():
    """The epoch counter's matrix products against torch's FLOP counter over one real ``_train_epoch``. Not exact:
    the counter leaves out the Student's t assignments' small products (n x latent x k) and the minibatch layer's
    L1 terms are not matrix products (subtracted here); within 2 % on this small bundle."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmclust.data import incomplete, make_multiview_blobs
    from mmclust.runtime import torch_generator

    ds = incomplete(make_multiview_blobs(600, 3, dims={"image": 60, "text": 30}, seed=2), 0.4, seed=0)
    model, rows, epoch = small_cigit_c_epochs(ds, latent_dim=16, image_hidden=(64, 64), text_hidden=(32, 32),
                                              generator12_hidden=(64, 32), generator21_hidden=(64, 64),
                                              discriminator1_hidden=32, discriminator2_hidden=64, batch_size=128)
    counter = FlopCounterMode(display=False)
    with counter:
        epoch(torch_generator(0))()
    measured = counter.get_total_flops() // 2
    nb = -(-ds.n_samples // model.batch_size)
    counted = cigit_c_epoch_matmul_multiply_adds(model.nets_, rows.n_img, rows.n_txt, nb)
    assert abs(counted / measured - 1) < 0.02, (counted, measured)


def test_bench_cigit_c_epoch_vs_flop_bound(benchmark, load_real, torch_threads, bench_device):
    """One CIGIT-C training epoch on BDGP at 50 % missing (targets + every batch's encoder and GAN steps).

    The bound is a chain of square float32 matmuls with the epoch's multiply-adds
    (:func:`cigit_c_epoch_multiply_adds`), timed in the same run; ``ratio_to_flop_bound`` = epoch / bound goes to
    ``extra_info`` (nothing asserted about time). The model is initialised once (no pre-training, no GAN warm-up:
    their epochs are not this benchmark's), so rounds train on.
    """
    from mmclust.data import incomplete
    from mmclust.methods.nets import EpochLosses
    from mmclust.runtime import torch_generator

    ds = incomplete(load_real("bdgp"), 0.5, 0)
    model, data, opts = untrained_cigit_c(ds, dict(kmeans_n_init=1, random_state=0), bench_device)
    rows = data[2]
    gen, losses = torch_generator(0, bench_device), EpochLosses()

    def epoch():
        return model._train_epoch(0, *data, gen, opts, losses)

    epoch = _on_device_finish(epoch, bench_device)
    epoch()  # the first epoch of a process (or of a new thread count) compiles the minibatch layer's kernels
    row = benchmark.pedantic(epoch, rounds=3, iterations=1)
    assert all(np.isfinite(v) for v in row.values())
    n_batches = -(-ds.n_samples // model.batch_size)
    macs = cigit_c_epoch_multiply_adds(model.nets_, rows.n_img, rows.n_txt, n_batches)
    _record_ratio_to_flop_bound(benchmark, epoch, macs, bench_device)
    _record_ratio_to_floor(benchmark, epoch, macs, bench_device)


# The phases of a CIGIT-C fit that train for a number of epochs, in the order fit runs them.
RUN_PHASES = ("pretrain_epochs", "gan_pretrain_epochs", "max_epochs")


def _fit_multiply_adds(ds, params: dict, **epochs) -> int:
    """Matrix multiply-adds (torch's FlopCounterMode: matmuls only) of one CIGIT-C fit with ``epochs`` of each phase
    (0 for the phases not named)."""
    from torch.utils.flop_counter import FlopCounterMode

    from mmclust.methods.cigit_c import CIGITC

    with FlopCounterMode(display=False) as counter:
        CIGITC(**{**params, **dict.fromkeys(RUN_PHASES, 0), **epochs}).fit(ds)
    return counter.get_total_flops() // 2


def cigit_c_run_multiply_adds(ds, params: dict) -> dict:
    """Matrix multiply-adds of a whole CIGIT-C fit with ``params`` (unset: the project's defaults, 100 + 50 + 200
    epochs), by phase: one epoch of a phase is a fit with that phase at one epoch less the fit with none, times the
    phase's epochs; ``outside_epochs`` is the fit with none (initial codes, the final assignment).

    A lower bound of the run's arithmetic: FlopCounterMode counts matrix products, not the minibatch layer's
    pairwise L1 sums (in :func:`cigit_c_epoch_multiply_adds`, about 3 % of a training epoch)."""
    from mmclust.methods.cigit_c import CIGITC

    defaults = CIGITC(**params)
    outside = _fit_multiply_adds(ds, params)
    return {"outside_epochs": outside,
            **{phase: (_fit_multiply_adds(ds, params, **{phase: 1}) - outside) * getattr(defaults, phase) for phase in RUN_PHASES}}


def square_matmul_seconds(seconds: float, n_products: int, multiply_adds: int, size: int = 512) -> float:
    """``multiply_adds`` at the rate of ``n_products`` size x size matmuls timed at ``seconds``."""
    return seconds * multiply_adds / (n_products * size**3)


def test_square_matmul_seconds_scales_by_multiply_adds():
    assert square_matmul_seconds(2.0, 3, 3 * 512**3) == 2.0
    assert square_matmul_seconds(2.0, 3, 30 * 512**3) == 20.0
    assert square_matmul_seconds(1.0, 1, 8 * 64**3, size=128) == 1.0


def test_each_cigit_c_epoch_of_a_phase_has_the_same_multiply_adds():
    """What the run count rests on: within a phase, every epoch adds the same multiply-adds (the batches partition the
    same rows each epoch), so one epoch times the phase's epochs is the phase. And the count is the arithmetic the
    layer-shape counters give: a pre-training epoch exactly, a training epoch within 2 % (see
    :func:`test_cigit_c_multiply_adds_match_torchs_count_of_an_epoch`)."""
    from mmclust.data import incomplete, make_multiview_blobs
    from mmclust.methods.cigit_c import CIGITC, _device_views

    ds = incomplete(make_multiview_blobs(300, 3, dims={"image": 40, "text": 20}, seed=4), 0.4, seed=0)
    params = dict(random_state=0, device="cpu", kmeans_n_init=1, batch_size=64)
    epochs = {"pretrain_epochs": 3, "gan_pretrain_epochs": 2, "max_epochs": 4}
    counts = cigit_c_run_multiply_adds(ds, {**params, **epochs})
    assert sum(counts.values()) == _fit_multiply_adds(ds, params, **epochs)
    for phase in RUN_PHASES:
        one, two = (_fit_multiply_adds(ds, params, **{phase: e}) - counts["outside_epochs"] for e in (1, 2))
        assert one > 0 and two == 2 * one, (phase, one, two)

    nets = CIGITC(**{**params, **dict.fromkeys(RUN_PHASES, 0)}).fit(ds).nets_
    rows = _device_views(ds, "cpu")[2]
    pretrain = (_linear_multiply_adds([nets.enc_img, nets.dec_img], rows.n_img)
                + _linear_multiply_adds([nets.enc_txt, nets.dec_txt], rows.n_txt))
    assert counts["pretrain_epochs"] == 3 * pretrain
    by_shapes = cigit_c_epoch_matmul_multiply_adds(nets, rows.n_img, rows.n_txt, -(-ds.n_samples // 64))
    assert abs(counts["max_epochs"] / 4 / by_shapes - 1) < 0.02, (counts["max_epochs"] / 4, by_shapes)


def test_minibatch_kernels_stand_in_for_the_recorded_cdist_calls(monkeypatch, cpp_compiler):
    """The substitutes run the layer's fused kernels on operands made from the recorded cdist calls: the forward
    gives the closeness features of the same rows, the backward the layer's gradient formula on them; a batch of fewer
    than ``FUSED_MIN_ROWS`` rows replays cdist, as the run does; and a replay given them calls no cdist for the rest."""
    from mmclust.methods.nets import FUSED_MIN_ROWS, _closeness_backward

    aten = torch.ops.aten
    monkeypatch.delenv("MMCLUST_COMPILE", raising=False)  # about the fused path, even in a session run without it
    subs = minibatch_kernel_substitutes("cpu")
    assert subs, "a C++ compiler is here, but the minibatch layer's kernels did not build"
    assert minibatch_kernel_substitutes("meta") == {}
    gen = torch.Generator().manual_seed(0)
    for rows, fused in ((FUSED_MIN_ROWS, True), (FUSED_MIN_ROWS - 1, False), (40, True)):
        m = torch.rand(4, rows, 3, generator=gen)
        dist = torch.cdist(m, m, p=1.0)
        weight = torch.rand(4, rows, rows, generator=gen)
        forward = subs[aten._cdist_forward.default]((m, m, 1.0, None), {})()
        backward = subs[aten._cdist_backward.default]((weight, m, m, 1.0, dist), {})()
        if fused:
            torch.testing.assert_close(forward[0], torch.exp(-dist).sum(2) - 1)
            expected = _closeness_backward(m.transpose(1, 2).contiguous(), torch.exp(-dist), weight[:, :, 0].contiguous())
            torch.testing.assert_close(backward, expected)
        else:
            torch.testing.assert_close(forward, dist)
            torch.testing.assert_close(backward, aten._cdist_backward.default(weight, m, m, 1.0, dist))


def test_replay_calls_the_substitutes_in_place_of_the_recorded_ops():
    """A substitute replaces its op's calls, in order; the operands it prepares from are made once per signature."""
    calls, _ = record_calls(_autoencoder_like_calls)
    pairwise = split(calls)["pairwise"]
    ran, prepared = [], []

    def prepare(args, kwargs):
        prepared.append(args[0].shape)
        return lambda: ran.append(args[0].shape)

    run = replay(calls, substitutes={torch.ops.aten._cdist_forward.default: prepare})
    assert prepared == [(2, 6, 3)] and ran == []
    run()
    run()
    assert ran == [(2, 6, 3)] * 2 * len(pairwise)


class _Timed:
    """A stand-in replay: calling it does nothing; a stubbed ``_best_of`` reads its calls."""

    def __init__(self, calls):
        self.calls = calls

    def __call__(self):
        pass


def test_run_floor_replays_each_phases_products_times_its_epochs(monkeypatch):
    """The run floor covers the run's epochs exactly: with each replay timed as its multiply-adds, every phase's floor
    is that phase's matrix multiply-adds in the run as torch's FLOP counter finds them (one epoch's worth of calls,
    times the phase's epochs), on the threads asked for; the updates are replayed beside the products, and so are
    the minibatch layer's distances in the GAN phases. Without the GANs, fit skips their warm-up, and so does the
    floor."""
    import tests.test_benchmarks as here
    from mmclust.data import incomplete, make_multiview_blobs

    ds = incomplete(make_multiview_blobs(300, 3, dims={"image": 40, "text": 20}, seed=4), 0.4, seed=0)
    replayed, threads = [], torch.get_num_threads() + 1

    def best_of(*fns, repeat, device):
        assert torch.get_num_threads() == threads
        return [multiply_adds(f.calls) for f in fns]

    monkeypatch.setattr(here, "replay", lambda calls, substitutes: replayed.append(calls) or _Timed(calls))
    monkeypatch.setattr(here, "_best_of", best_of)
    for use_gan in (True, False):
        params = dict(random_state=0, device="cpu", kmeans_n_init=1, batch_size=64, pretrain_epochs=3,
                      gan_pretrain_epochs=2, max_epochs=4, use_gan=use_gan)
        replayed.clear()
        floor = cigit_c_run_floor(ds, params, threads=threads)
        counts = cigit_c_run_multiply_adds(ds, params)
        assert floor == {phase: counts[phase] for phase in RUN_PHASES}
        assert (floor["gan_pretrain_epochs"] > 0) == use_gan
        phases = len(RUN_PHASES) - (not use_gan)
        assert len(replayed) == len(KINDS) * phases
        assert all(calls and calls[0].op in UPDATES for calls in replayed[1::len(KINDS)])
        assert [bool(calls) for calls in replayed[2::len(KINDS)]] == ([False, True, True] if use_gan else [False, False])
    assert torch.get_num_threads() == threads - 1


def test_floor_seconds_names_each_kinds_time(monkeypatch):
    """Each kind's replay is timed under its own name (and the epoch beside them under ``also``), after one untimed
    call of every replay."""
    import tests.test_benchmarks as here

    calls, _ = record_calls(lambda: _autoencoder_like_calls())
    kinds = split(calls)
    untimed = []

    class Counted(_Timed):
        def __call__(self):
            untimed.append(len(self.calls))

    monkeypatch.setattr(here, "replay", lambda calls, substitutes: Counted(calls))
    monkeypatch.setattr(here, "_best_of", lambda *fns, repeat, device: [len(f.calls) if isinstance(f, _Timed) else -1 for f in fns])
    assert floor_seconds(calls, also=lambda: None) == {**{kind: len(kinds[kind]) for kind in KINDS}, "also": -1}
    assert sorted(untimed) == sorted(len(kinds[kind]) for kind in KINDS)
    assert len({len(kinds[kind]) for kind in KINDS}) == len(KINDS)  # the kinds are told apart by their lengths


def _autoencoder_like_calls():
    """Three matrix products (forward, weight gradient, one more), one update, five cdist calls: distinct counts."""
    w = torch.nn.Parameter(torch.rand(4, 3))
    opt = torch.optim.Adam([w], fused=True)
    x = torch.rand(5, 4)
    (x @ w).sum().backward()
    torch.mm(x, w)
    opt.step()
    m = torch.rand(2, 6, 3)
    for _ in range(5):
        torch.cdist(m, m, p=1.0)


def test_ratio_to_floor_is_recorded_from_the_kinds(monkeypatch):
    """``floor_s`` is the kinds' sum, ``ratio_to_floor`` the epoch over it, ``floor_to_flop_bound`` it over the bound."""
    from types import SimpleNamespace

    import tests.test_benchmarks as here

    monkeypatch.setattr(here, "floor_seconds", lambda calls, device, repeat, also: dict(products=1.0, updates=2.0, pairwise=3.0, also=12.0))
    bench = SimpleNamespace(extra_info={"bound_s": 4.0}, disabled=True)
    x, w = torch.rand(3, 4), torch.rand(4, 5)
    _record_ratio_to_floor(bench, lambda: torch.mm(x, w), 3 * 4 * 5)
    info = bench.extra_info
    assert (info["products_s"], info["updates_s"], info["pairwise_s"]) == (1.0, 2.0, 3.0)
    assert info["floor_s"] == 6.0 and info["ratio_to_floor"] == 2.0 and info["floor_to_flop_bound"] == 1.5
    assert info["recorded_multiply_adds"] == 60
    with pytest.raises(AssertionError):
        _record_ratio_to_floor(bench, lambda: torch.mm(x, w), 2 * 60)  # a recording that is not the counted epoch


def test_bench_cigit_c_run_flop_bound(benchmark, load_real):
    """A whole CIGIT-C BDGP run (50 % missing, the project's defaults: 100 + 50 + 200 epochs) as square float32
    matmuls on 2 threads.

    ``bound_s``: the run's matrix multiply-adds (:func:`cigit_c_run_multiply_adds`) at this machine's measured rate of
    512 x 512 matmuls on 2 threads, timed on a tenth of them (the benchmark's subject) and scaled; at that rate the
    matrix products alone take ``bound_s``. Recorded beside it: the multiply-adds per phase, and ``bound_to_target``
    against the 60 s asked of a run on 2 threads. With timing disabled (the default test run) one product stands in
    for the tenth and no time is recorded.
    """
    from mmclust.data import incomplete
    from mmclust.methods.cigit_c import CIGITC
    from mmclust.repro.threads import limit_threads

    ds = incomplete(load_real("bdgp"), 0.5, 0)
    # k-means restarts add no matrix products (scikit-learn, on the host): one is enough for the count
    params = {**CIGITC.params_for_dataset("bdgp"), "random_state": 0, "device": "cpu", "kmeans_n_init": 1}
    counts = cigit_c_run_multiply_adds(ds, params)
    macs = sum(counts.values())
    assert counts["max_epochs"] > counts["pretrain_epochs"] > 0
    benchmark.extra_info.update(multiply_adds=macs, **{f"{phase}_multiply_adds": v for phase, v in counts.items()})
    n_mm = 1 if benchmark.disabled else max(1, round(macs / 512**3 / 10))
    tenth = _square_products(n_mm)
    restore = limit_threads(2)
    try:
        benchmark.pedantic(tenth, rounds=3, iterations=1)
    finally:
        restore()
    if not benchmark.disabled:
        bound_s = square_matmul_seconds(benchmark.stats.stats.min, n_mm, macs)
        benchmark.extra_info.update(bound_s=bound_s, target_s=60.0, bound_to_target=bound_s / 60.0, torch_threads=2)
        floor = cigit_c_run_floor(ds, params, threads=2)
        benchmark.extra_info.update(**{f"{phase}_floor_s": v for phase, v in floor.items()}, floor_s=sum(floor.values()),
                                    floor_to_target=sum(floor.values()) / 60.0)


def cigit_c_run_floor(ds, params: dict, threads: int, repeat: int = 3) -> dict:
    """Seconds per phase of a CIGIT-C fit with ``params`` (unset: the project's defaults) that its matrix products,
    optimiser updates and minibatch-layer distances alone take on the CPU with ``threads`` torch threads: one epoch of
    the phase recorded and replayed back to back (:mod:`tests.work_floor`, best of ``repeat``), times the epochs the
    fit runs of that phase. What this implementation's epochs cannot go below on this machine, however much the rest
    of their work is sped up (the code outside the epochs, initial codes and k-means, is left out: the floor errs
    low)."""
    from mmclust.methods.cigit_c import CIGITC
    from mmclust.methods.nets import EpochLosses
    from mmclust.repro.threads import limit_threads
    from mmclust.runtime import torch_generator

    epochs = CIGITC(**params)
    run_epochs = {phase: getattr(epochs, phase) for phase in RUN_PHASES}
    if not epochs.use_gan:  # fit skips the GAN warm-up
        run_epochs["gan_pretrain_epochs"] = 0
    model, data, opts = untrained_cigit_c(ds, params)
    x_img, x_txt, rows, _ = data
    gen, losses = torch_generator(0), EpochLosses()
    model.set_params(pretrain_epochs=1)
    one_epoch = {"pretrain_epochs": lambda: model._pretrain(x_img, x_txt, rows, gen, "cpu"),
                 "gan_pretrain_epochs": lambda: model._gan_warmup_epoch(0, *data, gen, opts, losses),
                 "max_epochs": lambda: model._train_epoch(0, *data, gen, opts, losses)}
    restore = limit_threads(threads)
    try:
        return {phase: sum(floor_seconds(record_calls(one_epoch[phase])[0], "cpu", repeat).values()) * run_epochs[phase]
                if run_epochs[phase] else 0.0 for phase in RUN_PHASES}
    finally:
        restore()
