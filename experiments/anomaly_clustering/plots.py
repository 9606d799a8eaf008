"""α heat-map overlays, as the reference implementation's ``draw_alpha``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def draw_alpha(
    images: torch.Tensor,
    alpha: np.ndarray,
    grid_shape: tuple[int, int],
    titles: Sequence[str] | None = None,
    columns: int = 6,
):
    """A figure with every image and its patch weights α (bilinearly upsampled from the patch grid to the image)
    overlaid as a semi-transparent heat map."""
    from matplotlib.figure import Figure

    n = len(images)
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(2.0 * cols, 2.1 * rows))
    h, w = grid_shape
    maps = torch.as_tensor(np.asarray(alpha, dtype=np.float32)).reshape(n, 1, h, w)
    maps = F.interpolate(maps, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)[:, 0].numpy()
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i].permute(1, 2, 0).numpy())
        ax.imshow(maps[i], cmap="jet", alpha=0.45)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    fig.tight_layout()
    return fig
