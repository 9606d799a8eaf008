"""Tests for experiments.augment: the perturbation registry, each perturbation against an independent computation
or a statistical property, and the SSL view pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from experiments.augment import (
    AUGMENTATIONS,
    VIEW_DEFAULTS,
    GaussianBlur,
    GaussianNoise,
    NonRigid,
    Perturbation,
    TwoViews,
    make_augmentation,
    ssl_view_transform,
)


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def random_images(n: int = 4, c: int = 3, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=gen(seed))


# ----------------------------------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert set(AUGMENTATIONS) == {"none", "gaussian_noise", "gaussian_blur", "non_rigid"}
    for name in AUGMENTATIONS:
        p = make_augmentation(name)
        assert isinstance(p, Perturbation) and p.name == name


def test_make_augmentation_passes_params() -> None:
    p = make_augmentation("gaussian_blur", sigma=0.5, kernel_size=3)
    assert isinstance(p, GaussianBlur) and p.params == {"sigma": 0.5, "kernel_size": 3}
    assert make_augmentation("non_rigid", alpha=3, sigma=2).params == {"alpha": 3.0, "sigma": 2.0}


def test_make_augmentation_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        make_augmentation("salt_and_pepper")
    msg = str(err.value)
    assert "salt_and_pepper" in msg
    assert all(name in msg for name in AUGMENTATIONS)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("gaussian_noise", {"foo": 1.0}, "sigma"),
        ("gaussian_noise", {"sigma": "loud"}, "sigma"),
        ("gaussian_blur", {"radius": 2}, "kernel_size"),
        ("non_rigid", {"beta": 1}, "alpha"),
        ("none", {"sigma": 1}, "none"),
    ],
)
def test_make_augmentation_bad_parameters(name: str, params: dict, expected: str) -> None:
    with pytest.raises(ValueError) as err:
        make_augmentation(name, **params)
    assert name in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("gaussian_noise", {"sigma": -0.1}),
        ("gaussian_blur", {"sigma": 0.0}),
        ("gaussian_blur", {"sigma": 1.0, "kernel_size": 4}),
        ("gaussian_blur", {"sigma": 1.0, "kernel_size": -1}),
        ("non_rigid", {"alpha": -1.0}),
        ("non_rigid", {"sigma": 0.0}),
    ],
)
def test_bad_parameter_values_raise(name: str, params: dict) -> None:
    with pytest.raises(ValueError, match=name):
        make_augmentation(name, **params)


def test_perturbations_reject_non_batches() -> None:
    for name in AUGMENTATIONS:
        with pytest.raises(ValueError, match="N, C, H, W"):
            make_augmentation(name)(torch.rand(3, 8, 8))


def test_none_is_identity() -> None:
    x = random_images()
    assert torch.equal(make_augmentation("none")(x, gen(0)), x)


# ----------------------------------------------------------------------------------------------------- noise


def test_gaussian_noise_std_matches_sigma_on_mid_grey() -> None:
    x = torch.full((8, 3, 32, 32), 0.5)
    sigma = 0.05
    y = GaussianNoise(sigma)(x, gen(0))
    residual = (y - x).double()
    # 24 576 samples: the std estimate's relative standard error is ~0.5 %
    assert residual.std().item() == pytest.approx(sigma, rel=0.03)
    assert abs(residual.mean().item()) < 3 * sigma / math.sqrt(residual.numel())
    # i.i.d.: neighbouring pixels are uncorrelated
    flat = residual.flatten()
    corr = torch.corrcoef(torch.stack([flat[:-1], flat[1:]]))[0, 1].item()
    assert abs(corr) < 0.05


def test_gaussian_noise_clips_to_unit_range() -> None:
    x = torch.cat([torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8), random_images(2, 3, 8, 8)])
    y = GaussianNoise(0.5)(x, gen(1))
    assert y.min().item() == 0.0 and y.max().item() == 1.0
    assert ((y == 0) | (y == 1)).any() and ((y > 0) & (y < 1)).any()
    assert y.shape == x.shape and y.dtype == x.dtype


def test_gaussian_noise_is_reproducible_by_generator() -> None:
    x = random_images()
    noise = GaussianNoise(0.1)
    a, b, c = noise(x, gen(3)), noise(x, gen(3)), noise(x, gen(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert torch.equal(GaussianNoise(0.0)(x, gen(3)), x)
    assert torch.equal(x, random_images())  # the input is not modified in place


# ----------------------------------------------------------------------------------------------------- blur


def blur_reference(img: np.ndarray, sigma: float, k: int) -> np.ndarray:
    """Direct 2-D correlation of every channel with a normalised, sampled ``k x k`` Gaussian, reflect padding
    (``d c b | a b c d | c b a``, the edge pixel not repeated)."""
    r = k // 2
    t = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    kernel = np.outer(g, g)
    kernel /= kernel.sum()
    out = np.zeros_like(img, dtype=np.float64)
    padded = np.pad(img.astype(np.float64), ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    h, w = img.shape[-2:]
    for dy in range(k):
        for dx in range(k):
            out += kernel[dy, dx] * padded[:, :, dy : dy + h, dx : dx + w]
    return out


@pytest.mark.parametrize(("sigma", "kernel_size"), [(1.0, None), (0.7, None), (2.0, 5), (1.5, 3)])
def test_gaussian_blur_matches_direct_convolution(sigma: float, kernel_size: int | None) -> None:
    x = random_images(3, 3, 13, 11, seed=5)
    blur = GaussianBlur(sigma, kernel_size)
    k = blur.params["kernel_size"]
    if kernel_size is None:
        assert k == 2 * math.ceil(3 * sigma) + 1
    got = blur(x).numpy()
    assert np.allclose(got, blur_reference(x.numpy(), sigma, k), atol=1e-5, rtol=0)


def test_gaussian_blur_against_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    x = random_images(2, 3, 16, 16, seed=6)
    got = GaussianBlur(1.0)(x).numpy()  # kernel 7: radius 3 = truncate 3 sigma
    want = ndimage.gaussian_filter(x.numpy().astype(np.float64), sigma=(0, 0, 1.0, 1.0), mode="mirror", truncate=3.0)
    assert np.allclose(got, want, atol=1e-5, rtol=0)


def test_gaussian_blur_preserves_constants_and_mean() -> None:
    x = torch.full((2, 3, 10, 10), 0.3)
    assert torch.allclose(GaussianBlur(1.5)(x), x, atol=1e-6)
    y = GaussianBlur(1.0)(random_images(2, 3, 16, 16))
    assert y.min() >= 0 and y.max() <= 1
    # blurring smooths: the pixel variance drops
    assert y.var().item() < random_images(2, 3, 16, 16).var().item() / 3
    # deterministic: no generator needed, same output twice
    assert torch.equal(GaussianBlur(1.0)(random_images()), GaussianBlur(1.0)(random_images()))


# ----------------------------------------------------------------------------------------------------- elastic


def test_non_rigid_zero_alpha_is_identity() -> None:
    x = random_images(3, 3, 16, 16)
    y = NonRigid(alpha=0.0, sigma=3.0)(x, gen(0))
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-5)


def test_non_rigid_warps_each_image_differently_and_reproducibly() -> None:
    base = random_images(1, 3, 24, 24, seed=2)
    x = base.repeat(3, 1, 1, 1)
    warp = NonRigid(alpha=30.0, sigma=3.0)
    a, b, c = warp(x, gen(7)), warp(x, gen(7)), warp(x, gen(8))
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.allclose(a, c, atol=1e-3)
    # the same image in three batch slots got three different warps
    assert not torch.allclose(a[0], a[1], atol=1e-3) and not torch.allclose(a[1], a[2], atol=1e-3)
    # a real change, yet still an image in [0, 1] (bilinear resampling, zero fill)
    assert (a - x).abs().mean().item() > 0.05
    assert a.min() >= 0 and a.max() <= 1 + 1e-6


def test_non_rigid_moves_a_smooth_image_smoothly() -> None:
    """A small warp of a smooth ramp changes pixels by at most (displacement x gradient): check the bound."""
    h = w = 32
    ramp = torch.linspace(0, 1, w).view(1, 1, 1, w).expand(2, 3, h, w).contiguous()
    alpha = 2.0
    y = NonRigid(alpha=alpha, sigma=4.0)(ramp, gen(0))
    interior = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    # |displacement| <= alpha pixels along x; the ramp's slope is 1 / (w - 1) per pixel
    assert (y - ramp)[interior].abs().max().item() <= alpha / (w - 1) + 1e-5
    assert (y - ramp)[interior].abs().max().item() > 0


# ----------------------------------------------------------------------------------------------------- SSL views


def uint8_images(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen(seed))


def test_ssl_view_transform_shape_and_range() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    view = ssl_view_transform(16)
    img = Image.fromarray(uint8_images(1, 24)[0].permute(1, 2, 0).numpy())
    for _ in range(5):
        v = view(img)
        assert v.shape == (3, 16, 16) and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 1


def test_ssl_view_transform_overrides_and_unknown_options() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    # everything random switched off and a full-size crop: the view is the image itself
    off = dict(cj_prob=0.0, random_gray_scale=0.0, gaussian_blur=0.0, hf_prob=0.0, min_scale=1.0)
    view = ssl_view_transform(16, **{**off, "sigmas": [0.1, 1.0]})
    raw = uint8_images(1, 16)[0]
    v = view(Image.fromarray(raw.permute(1, 2, 0).numpy()))
    assert torch.allclose(v, raw.float() / 255, atol=1e-6)
    with pytest.raises(ValueError) as err:
        ssl_view_transform(16, jitter=0.3)
    assert "jitter" in str(err.value)
    assert all(option in str(err.value) for option in VIEW_DEFAULTS)


def test_two_views_are_two_different_views() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    images = uint8_images(5, 20)
    pairs = TwoViews(images, ssl_view_transform(16))
    assert len(pairs) == 5
    for i in range(5):
        v0, v1 = pairs[i]
        assert v0.shape == v1.shape == (3, 16, 16)
        assert not torch.allclose(v0, v1)
    # with the randomness switched off, both views are the image
    plain = TwoViews(
        images,
        ssl_view_transform(20, cj_prob=0.0, random_gray_scale=0.0, gaussian_blur=0.0, hf_prob=0.0, min_scale=1.0),
    )
    v0, v1 = plain[2]
    assert torch.allclose(v0, images[2].float() / 255, atol=1e-6) and torch.equal(v0, v1)
