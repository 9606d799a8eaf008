"""Tests for experiments.views: the batched SSL views match lightly's per-image PIL pipeline.

Three levels: (1) each deterministic op, given the same parameters, equals the PIL op it replaces up to PIL's uint8
rounding; (2) the parameter sampler draws what torchvision and lightly draw; (3) end to end, the distributions of
statistics of the views (geometry via a coordinate-encoding image, grayscale and blur frequencies, per-channel pixel
statistics) agree with ``ssl_view_transform`` on the same images. Statistical comparisons use fixed seeds (no flakes)
and tolerances of 4-5 standard errors of the compared quantity, computed from the sample sizes used.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as F
from PIL import ImageFilter
from scipy import stats

from experiments.augment import VIEW_DEFAULTS, ssl_view_transform
from experiments.view_ops import adjust_hue, grayscale_luma
from experiments.views import BatchedSSLViews, ViewParams, pil_gaussian_blur

SIZE = 32


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def to_float(pil) -> torch.Tensor:
    return F.to_dtype(F.to_image(pil), torch.float32, scale=True)


@pytest.fixture(scope="module")
def colour_images() -> torch.Tensor:
    """16 smooth, colourful 32x32 images (low-resolution colour fields upsampled, plus texture)."""
    g = gen(0)
    coarse = torch.rand((16, 3, 4, 4), generator=g)
    smooth = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bicubic", align_corners=False)
    texture = 0.15 * torch.rand((16, 3, SIZE, SIZE), generator=g)
    return ((smooth * 0.85 + texture).clamp(0, 1) * 255).round().to(torch.uint8)


def per_image_views(images: torch.Tensor, n: int, seed: int, **options) -> torch.Tensor:
    """``n`` views by lightly's per-image pipeline, cycling through ``images`` (seeded global generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    t = ssl_view_transform(SIZE, **options)
    pils = [F.to_pil_image(im) for im in images]
    return torch.stack([t(pils[i % len(pils)]) for i in range(n)])


def batched_views(images: torch.Tensor, n: int, seed: int, **options) -> torch.Tensor:
    idx = torch.arange(n) % len(images)
    return BatchedSSLViews(SIZE, **options)(images[idx], gen(seed))


def close_means(a: np.ndarray, b: np.ndarray, z: float = 4.0) -> None:
    """The two samples' means differ by at most ``z`` standard errors of the difference."""
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= z * se + 1e-12, (a.mean(), b.mean(), se)


# ----------------------------------------------------------------------------------------- API and basic contract


def test_shape_dtype_range_and_inputs(colour_images) -> None:
    views = BatchedSSLViews(24)
    out = views(colour_images, gen(1))
    assert out.shape == (16, 3, 24, 24) and out.dtype == torch.float32 and out.device == colour_images.device
    assert out.min() >= 0.0 and out.max() <= 1.0
    # uint8 and float inputs give the same views for the same generator state
    as_float = views(colour_images.float() / 255, gen(1))
    assert torch.allclose(out, as_float, atol=1e-5)
    # reproducible with the same generator, different with another seed, fresh parameters on every call
    assert torch.equal(views(colour_images, gen(1)), out)
    assert not torch.equal(views(colour_images, gen(2)), out)
    g = gen(1)
    first, second = views(colour_images, g), views(colour_images, g)
    assert torch.equal(first, out) and not torch.equal(second, first)
    # a non-square input and an empty batch
    assert views(colour_images[:, :, :, :20], gen(0)).shape == (16, 3, 24, 24)
    assert views(colour_images[:0], gen(0)).shape == (0, 3, 24, 24)


def test_bad_options_and_inputs_raise() -> None:
    with pytest.raises(ValueError, match="unknown view option"):
        BatchedSSLViews(32, nope=1)
    with pytest.raises(ValueError, match="probability"):
        BatchedSSLViews(32, hf_prob=1.5)
    with pytest.raises(ValueError, match="min_scale"):
        BatchedSSLViews(32, min_scale=0.0)
    with pytest.raises(ValueError, match="sigmas"):
        BatchedSSLViews(32, sigmas=(2.0, 1.0))
    with pytest.raises(ValueError, match="cj_hue"):
        BatchedSSLViews(32, cj_hue=0.7)
    with pytest.raises(ValueError, match="RGB image batch"):
        BatchedSSLViews(32)(torch.zeros((2, 1, 8, 8), dtype=torch.uint8))


def test_same_options_as_the_per_image_transform_and_conversion() -> None:
    assert BatchedSSLViews(32).options == {**VIEW_DEFAULTS, "sigmas": tuple(VIEW_DEFAULTS["sigmas"])}
    custom = {
        "min_scale": 0.3,
        "cj_prob": 0.5,
        "cj_bright": 0.4,
        "cj_hue": 0.1,
        "cj_sat": 0.0,
        "random_gray_scale": 0.1,
        "gaussian_blur": 0.25,
        "sigmas": (0.5, 1.5),
        "vf_prob": 0.2,
        "hf_prob": 0.3,
        "rr_prob": 0.4,
    }
    views = BatchedSSLViews(16, **custom)
    back = BatchedSSLViews.from_lightly(ssl_view_transform(16, **custom))
    assert back.input_size == 16 and back.options == views.options
    assert BatchedSSLViews.from_lightly(views.per_image()).options == views.options
    with pytest.raises(ValueError, match="SimCLRViewTransform"):
        BatchedSSLViews.from_lightly(lambda image: image)


# ----------------------------------------------------------------------------------------- ops equal PIL's ops


def with_params(n: int, **changes) -> ViewParams:
    """Parameters of ``n`` identity views (full crop, no flips, no jitter, no gray, no blur), then ``changes``."""
    base = dict(
        top=torch.zeros(n, dtype=torch.long),
        left=torch.zeros(n, dtype=torch.long),
        height=torch.full((n,), SIZE),
        width=torch.full((n,), SIZE),
        hflip=torch.zeros(n, dtype=torch.bool),
        vflip=torch.zeros(n, dtype=torch.bool),
        rotate=torch.zeros(n, dtype=torch.bool),
        jitter=torch.zeros(n, dtype=torch.bool),
        order=torch.arange(4).repeat(n, 1),
        brightness=torch.ones(n, dtype=torch.float64),
        contrast=torch.ones(n, dtype=torch.float64),
        saturation=torch.ones(n, dtype=torch.float64),
        hue=torch.zeros(n, dtype=torch.float64),
        gray=torch.zeros(n, dtype=torch.bool),
        blur=torch.zeros(n, dtype=torch.bool),
        sigma=torch.ones(n, dtype=torch.float64),
    )
    base.update(changes)
    return ViewParams(**base)


def pil_view(image: torch.Tensor, p: ViewParams, i: int, size: int) -> torch.Tensor:
    """lightly's pipeline on one image with the parameters ``p[i]`` instead of random ones."""
    im = F.resized_crop(
        F.to_pil_image(image),
        int(p.top[i]),
        int(p.left[i]),
        int(p.height[i]),
        int(p.width[i]),
        [size, size],
        antialias=True,
    )
    if p.hflip[i]:
        im = F.horizontal_flip(im)
    if p.vflip[i]:
        im = F.vertical_flip(im)
    if p.rotate[i]:
        im = F.rotate(im, 90)
    if p.jitter[i]:
        fns = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        factors = (p.brightness[i], p.contrast[i], p.saturation[i], p.hue[i])
        for op in p.order[i].tolist():
            im = fns[op](im, float(factors[op]))
    if p.gray[i]:
        im = F.rgb_to_grayscale(im, num_output_channels=3)
    if p.blur[i]:
        im = im.filter(ImageFilter.GaussianBlur(radius=float(p.sigma[i])))
    return to_float(im)


@pytest.mark.parametrize("size", [32, 20, 45])  # up-, down- (antialiased) and mixed resampling
def test_crop_resize_flips_rotation_equal_pil(colour_images, size: int) -> None:
    views = BatchedSSLViews(
        size, cj_prob=0, random_gray_scale=0, gaussian_blur=0, hf_prob=0.5, vf_prob=0.5, rr_prob=0.5
    )
    p = views.sample(48, SIZE, SIZE, gen(3))
    images = colour_images.repeat(3, 1, 1, 1)
    ours = views.apply(images, p)
    ref = torch.stack([pil_view(images[i], p, i, size) for i in range(48)])
    assert (ours - ref).abs().max() <= 1.01 / 255  # PIL rounds the result to uint8


def test_colour_ops_equal_pil(colour_images) -> None:
    x = colour_images.float() / 255
    n = len(x)
    f = 0.3 + 1.4 * torch.rand(n, generator=gen(4))
    for op, fn in enumerate((F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)):
        factors = {name: f.double() for name in ("brightness", "contrast", "saturation")}
        p = with_params(
            n, jitter=torch.ones(n, dtype=torch.bool), order=torch.tensor([op, 3, 3, 3]).repeat(n, 1), **factors
        )
        ours = BatchedSSLViews(SIZE, cj_hue=0.0).apply(colour_images, p)  # hue off: only ``op`` acts
        ref = torch.stack([to_float(fn(F.to_pil_image(colour_images[i]), float(f[i]))) for i in range(n)])
        assert (ours - ref).abs().max() <= 1.5 / 255, fn.__name__
    # hue: PIL shifts its 8-bit H channel by int(255 h) / 256 of a turn and rounds HSV to uint8 — torchvision's own
    # tensor adjust_hue differs from PIL by the same few levels; ours equals torchvision's tensor version
    shift = 0.4 * torch.rand(n, generator=gen(5)) - 0.2
    ours = adjust_hue(x, shift)
    tv = torch.stack([F.adjust_hue(x[i], float(shift[i])) for i in range(n)])
    assert torch.allclose(ours, tv, atol=1e-5)
    ref = torch.stack([to_float(F.adjust_hue(F.to_pil_image(colour_images[i]), float(shift[i]))) for i in range(n)])
    assert (ours - ref).abs().max() <= 12 / 255 and (ours - ref).abs().mean() <= 1 / 255
    # grayscale: PIL's convert("L") luma in all three channels
    ref = torch.stack([to_float(F.rgb_to_grayscale(F.to_pil_image(im), num_output_channels=3)) for im in colour_images])
    assert (grayscale_luma(x).expand(-1, 3, -1, -1) - ref).abs().max() <= 0.51 / 255


def test_blur_equals_pil_gaussian_blur(colour_images) -> None:
    sigma = torch.linspace(0.2, 2.0, len(colour_images), dtype=torch.float64)
    ours = pil_gaussian_blur(colour_images.float() / 255, sigma)
    ref = torch.stack(
        [
            to_float(F.to_pil_image(im).filter(ImageFilter.GaussianBlur(radius=float(s))))
            for im, s in zip(colour_images, sigma, strict=True)
        ]
    )
    # PIL rounds to uint8 after each of its six box passes
    assert (ours - ref).abs().max() <= 3 / 255 and (ours - ref).abs().mean() <= 0.6 / 255


def test_full_views_equal_pil_given_the_same_parameters(colour_images) -> None:
    views = BatchedSSLViews(SIZE, vf_prob=0.3, rr_prob=0.3)
    images = colour_images.repeat(4, 1, 1, 1)
    p = views.sample(len(images), SIZE, SIZE, gen(6))
    ours = views.apply(images, p)
    ref = torch.stack([pil_view(images[i], p, i, SIZE) for i in range(len(images))])
    diff = (ours - ref).abs().mean((1, 2, 3))
    # rounding after every PIL step, amplified by later contrast/saturation gains, stays within a few levels
    assert diff.max() <= 4 / 255 and diff.mean() <= 2 / 255


# ----------------------------------------------------------------------------------------- the sampler


def test_sampler_draws_torchvision_and_lightly_parameters() -> None:
    n = 4000
    p = BatchedSSLViews(SIZE).sample(n, SIZE, SIZE, gen(7))
    # RandomResizedCrop: compare (area fraction, aspect ratio) with torchvision's own sampler
    import torchvision.transforms.v2 as T

    torch.manual_seed(7)
    rrc = T.RandomResizedCrop(SIZE, scale=(VIEW_DEFAULTS["min_scale"], 1.0))
    ref = [rrc.make_params([torch.zeros(3, SIZE, SIZE)]) for _ in range(n)]
    ref_h, ref_w = np.array([r["height"] for r in ref]), np.array([r["width"] for r in ref])
    h, w = p.height.numpy(), p.width.numpy()
    for ours, theirs in ((h * w, ref_h * ref_w), (w / h, ref_w / ref_h), (p.top.numpy(), [r["top"] for r in ref])):
        theirs = np.asarray(theirs, dtype=float)
        close_means(ours.astype(float), theirs, z=4.5)
        assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert (p.top + p.height <= SIZE).all() and (p.left + p.width <= SIZE).all() and (p.top >= 0).all()

    # coins: |fraction - p| within 4.5 binomial standard errors (n = 4000: 0.03 at p = 0.5)
    for mask, prob in ((p.hflip, 0.5), (p.vflip, 0.0), (p.rotate, 0.0), (p.jitter, 0.8), (p.gray, 0.2), (p.blur, 0.5)):
        assert abs(mask.double().mean().item() - prob) <= 4.5 * math.sqrt(prob * (1 - prob) / n) + 1e-12
    # jitter factors uniform on torchvision's ranges; sigma uniform on sigmas
    for values, lo, hi in (
        (p.brightness, 0.3, 1.7),
        (p.contrast, 0.3, 1.7),
        (p.saturation, 0.3, 1.7),
        (p.hue, -0.2, 0.2),
        (p.sigma, 0.2, 2.0),
    ):
        assert values.min() >= lo and values.max() <= hi
        assert stats.kstest((values.numpy() - lo) / (hi - lo), "uniform").pvalue > 1e-3
    # the order of the four jitter ops: a uniform permutation per sample (torchvision: randperm(4) per image)
    counts = Counter(tuple(o) for o in p.order.tolist())
    assert len(counts) == 24
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


# ----------------------------------------------------------------------------------------- end-to-end distributions


def coordinate_image() -> torch.Tensor:
    """R encodes the column (8 x), G the row (8 y), B is constant: every geometric op is readable from a view."""
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    return torch.stack([8 * x, 8 * y, torch.full_like(x, 128)]).to(torch.uint8)[None]


def geometry(views: torch.Tensor) -> tuple[list[tuple], np.ndarray, np.ndarray]:
    """Per view: which output axis and direction the R and G ramps run along (the flip/rotation), and the crop's
    width and height in input pixels from the ramps' slopes (interior columns/rows 8 and 23: clear of the edge
    clamping of bilinear resampling for crops of >= 5 pixels)."""
    v = views.double() * 255
    signature, sizes = [], []
    for c in (0, 1):
        sx = (v[:, c, :, 23] - v[:, c, :, 8]).mean(1) / 15  # change per output column
        sy = (v[:, c, 23, :] - v[:, c, 8, :]).mean(1) / 15  # change per output row
        along_x = sx.abs() > sy.abs()
        slope = torch.where(along_x, sx, sy)
        signature.append(torch.stack([along_x.long(), (slope > 0).long()], 1))
        # input pixels per output pixel x output size; PIL's uint8 ramps are off by < 0.3 pixel: round
        sizes.append(np.round((slope.abs() * SIZE / 8).numpy()))
    sig = torch.cat(signature, 1)
    return [tuple(s) for s in sig.tolist()], sizes[0], sizes[1]


def test_geometry_distribution_matches_lightly() -> None:
    """Crop sizes, flips and rotations, read off a coordinate-encoding image: 1500 views per pipeline."""
    n = 1500
    opts = dict(cj_prob=0.0, random_gray_scale=0.0, gaussian_blur=0.0, vf_prob=0.3, rr_prob=0.25)
    image = coordinate_image()
    ours = geometry(batched_views(image, n, seed=11, **opts))
    ref = geometry(per_image_views(image, n, seed=11, **opts))
    # flips/rotations: the same 8 outcomes with the same frequencies (each within 4.5 standard errors)
    a, b = Counter(ours[0]), Counter(ref[0])
    assert set(a) == set(b) and len(a) == 8
    for k in a:
        pa, pb = a[k] / n, b[k] / n
        pooled = (pa + pb) / 2
        assert abs(pa - pb) <= 4.5 * math.sqrt(2 * pooled * (1 - pooled) / n), (k, pa, pb)
    hflip_expected = 0.5
    # crop: width and height (along the R and G ramps) and area; means within 4 SE, and KS
    for o, r in ((ours[1], ref[1]), (ours[2], ref[2]), (ours[1] * ours[2], ref[1] * ref[2])):
        close_means(o, r)
        assert stats.ks_2samp(o, r).pvalue > 1e-3
    area = ours[1] * ours[2] / SIZE**2
    assert area.min() >= VIEW_DEFAULTS["min_scale"] - 0.03 and area.max() <= 1.0 + 1e-6
    # and the flip probability itself: the R ramp runs backwards (w/o rotation) in about half the views
    no_rot = [s for s in ours[0] if s[0] == 1]
    frac = sum(s[1] == 0 for s in no_rot) / len(no_rot)
    assert abs(frac - hflip_expected) <= 4.5 * math.sqrt(0.25 / len(no_rot))


def checkerboard(square: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    board = ((x // square + y // square) % 2 * 255).to(torch.uint8)
    return torch.stack([board, 255 - board, board])[None]


def test_blur_frequency_and_strength_match_lightly() -> None:
    """min_scale = 1 keeps the whole image (up to a flip); blur changes the edges of a checkerboard of 4-pixel
    squares (by >= 4 levels at sigma = 0.2) and lowers its mean gradient by an amount that grows with sigma.
    1500 views each."""
    n = 1500
    opts = dict(cj_prob=0.0, random_gray_scale=0.0, min_scale=1.0)
    image = checkerboard(4)
    sharp = image.float()
    res = {}
    for name, v in (
        ("ours", batched_views(image, n, seed=12, **opts)),
        ("ref", per_image_views(image, n, seed=12, **opts)),
    ):
        v = v * 255
        change = torch.minimum((v - sharp).abs().amax((1, 2, 3)), (v - sharp.flip(-1)).abs().amax((1, 2, 3)))
        blurred = change > 2.5
        contrast = (v[:, :, :, 1:] - v[:, :, :, :-1]).abs().mean((1, 2, 3)) / 255  # sharp: 0.23, less with sigma
        res[name] = blurred.numpy(), contrast[blurred].numpy()
    for name in res:  # P(blur) = 0.5: within 4.5 binomial SE (0.058 at n = 1500)
        assert abs(res[name][0].mean() - 0.5) <= 4.5 * math.sqrt(0.25 / n)
    close_means(res["ours"][1], res["ref"][1])
    assert stats.ks_2samp(res["ours"][1], res["ref"][1]).pvalue > 1e-3


def test_grayscale_frequency_and_pixel_statistics_match_lightly(colour_images) -> None:
    """Default views of colourful images, 2000 per pipeline: the fraction of gray views (R == G == B) and the
    distributions of per-view channel means and standard deviations."""
    n = 2000
    ours = batched_views(colour_images, n, seed=13)
    ref = per_image_views(colour_images, n, seed=13)
    for v in (ours, ref):
        gray = ((v[:, 0] == v[:, 1]) & (v[:, 1] == v[:, 2])).flatten(1).all(1).double()
        assert abs(gray.mean().item() - 0.2) <= 4.5 * math.sqrt(0.2 * 0.8 / n)  # 0.04
    for stat in (lambda v: v.mean((2, 3)), lambda v: v.std((2, 3))):
        a, b = stat(ours).numpy(), stat(ref).numpy()
        for c in range(3):
            close_means(a[:, c], b[:, c])
            assert stats.ks_2samp(a[:, c], b[:, c]).pvalue > 1e-3
    # pooled pixel histograms (16 bins) agree to within 0.01 in every bin
    ha = torch.histc(ours, 16, 0, 1) / ours.numel()
    hb = torch.histc(ref, 16, 0, 1) / ref.numel()
    assert (ha - hb).abs().max() <= 0.01


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_views_equal_cpu_views(colour_images) -> None:
    views = BatchedSSLViews(SIZE)
    cpu = views(colour_images, gen(14))
    cuda = views(colour_images.cuda(), gen(14))
    assert cuda.is_cuda and torch.allclose(cuda.cpu(), cpu, atol=1e-4)


# ----------------------------------------------------------------------------------------- the training pipelines


@pytest.fixture(scope="module")
def digits16() -> torch.Tensor:
    from experiments.data import load_digits

    return load_digits(image_size=16).subset(max_train_per_class=2).train_images  # 20 images


def fresh_model():
    from experiments.models import build_model

    torch.manual_seed(0)
    return build_model("simclr", (0.5,) * 3, (0.25,) * 3)


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_batched_training_takes_batched_views_or_the_lightly_transform(digits16) -> None:
    from experiments.train import TrainSettings, train

    settings = TrainSettings(epochs=2, batch_size=8)
    a, b = fresh_model(), fresh_model()
    states = []
    ra = train(a, digits16, settings, ssl_view_transform(16), seed=0, on_epoch=lambda r, snap: states.append(snap()))
    rb = train(b, digits16, settings, BatchedSSLViews(16), seed=0)
    assert same(weights(a), weights(b)) and [r.loss for r in ra] == [r.loss for r in rb]
    # channels-last is the batched default; the model is handed back in the default layout
    assert all(p.is_contiguous() for p in a.parameters())
    assert all(v.is_contiguous() for v in states[-1].model.values())
    assert {"torch", "numpy", "loader", "perturb", "views"} <= set(states[-1].rng)
    # bf16 autocast on request (on this CPU too): finite, deterministic
    c, d = fresh_model(), fresh_model()
    rc = train(c, digits16, settings, BatchedSSLViews(16), seed=0, amp=True)
    train(d, digits16, settings, BatchedSSLViews(16), seed=0, amp=True)
    assert all(math.isfinite(r.loss) for r in rc) and same(weights(c), weights(d))


def test_per_image_pipeline_and_pipeline_errors(digits16) -> None:
    from experiments.train import TrainSettings, train

    settings = TrainSettings(epochs=1, batch_size=8)
    a, b = fresh_model(), fresh_model()
    train(a, digits16, settings, ssl_view_transform(16), seed=0, pipeline="per_image")
    train(b, digits16, settings, BatchedSSLViews(16), seed=0, pipeline="per_image")  # uses .per_image()
    assert same(weights(a), weights(b))
    with pytest.raises(ValueError, match="per_image"):
        train(fresh_model(), digits16, settings, lambda image: F.to_dtype(F.to_image(image), torch.float32, scale=True))
    train(
        fresh_model(),
        digits16,
        settings,
        lambda image: F.to_dtype(F.to_image(image), torch.float32, scale=True),
        pipeline="per_image",
    )
    with pytest.raises(ValueError, match="pipeline"):
        train(fresh_model(), digits16, settings, BatchedSSLViews(16), pipeline="gpu")


def test_per_image_pipeline_with_workers_is_deterministic_and_resumes_exactly(digits16) -> None:
    """proj18's DataLoader with 2 workers: the workers' torch and numpy generators are seeded from the loader's
    generator, which the state holds."""
    from experiments.train import TrainSettings, TrainState, train

    settings = TrainSettings(epochs=2, batch_size=10, lr=0.03)
    kw = dict(seed=5, pipeline="per_image", num_workers=2)
    straight = fresh_model()
    saved = []
    train(straight, digits16, settings, ssl_view_transform(16), on_epoch=lambda r, snap: saved.append(snap()), **kw)
    # a fresh start from the epoch-1 state (other global RNG state) reproduces epoch 2, worker views included
    torch.manual_seed(123)
    np.random.seed(123)
    resumed = fresh_model()
    train(resumed, digits16, settings, ssl_view_transform(16), state=TrainState.from_dict(saved[0].to_dict()), **kw)
    assert same(weights(straight), weights(resumed))
