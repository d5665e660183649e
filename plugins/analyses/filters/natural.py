"""Natural images that ship inside installed packages, and patches sampled from them.

Nothing is downloaded: the images come from ``skimage.data`` (photographs and
natural textures bundled with scikit-image) and scikit-learn's two sample photos.
Patches are drawn at uniformly random positions with a seeded generator, so the
same ``(size, count, seed)`` always gives the same patches.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: skimage.data images used as natural scenes and textures (no microscopy, no text).
SKIMAGE_IMAGES = ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass",
                  "gravel", "moon", "coins")
#: scikit-learn sample photographs (by file stem).
SKLEARN_IMAGES = ("china", "flower")
NATURAL_IMAGES = SKIMAGE_IMAGES + SKLEARN_IMAGES


@lru_cache(maxsize=1)
def _load_all() -> tuple[tuple[str, np.ndarray], ...]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    images: list[tuple[str, np.ndarray]] = []
    for name in SKIMAGE_IMAGES:
        images.append((name, getattr(skimage.data, name)()))
    sample = load_sample_images()
    for path, image in zip(sample.filenames, sample.images, strict=True):
        stem = path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        images.append((stem, image))
    out = []
    for name, image in images:
        array = np.asarray(image, dtype=np.float64) / 255.0
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        out.append((name, np.ascontiguousarray(array[:, :, :3].transpose(2, 0, 1))))
    return tuple(out)


def natural_images(color: bool = False) -> list[tuple[str, np.ndarray]]:
    """The bundled natural images as ``(name, Array[C, H, W])`` in [0, 1], float64.

    Args:
        color: Keep RGB (``C = 3``); otherwise luminance (ITU-R 601 weights, ``C = 1``).
            Grayscale source images are repeated to three equal channels in colour mode.
    """
    weights = np.array([0.299, 0.587, 0.114]).reshape(3, 1, 1)
    return [(name, image if color else (image * weights).sum(axis=0, keepdims=True))
            for name, image in _load_all()]


def sample_patches(size: int | tuple[int, int], count: int, seed: int = 0,
                   color: bool = False) -> np.ndarray:
    """Sample ``count`` patches deterministically from the bundled natural images.

    Every image contributes the same share of patches (the remainder goes to the
    first images), at uniformly random positions from ``numpy.random.default_rng(seed)``.

    Args:
        size: Patch side ``k`` or ``(height, width)``.
        count: Number of patches.
        seed: Seed of the position generator.
        color: RGB patches instead of luminance.

    Returns:
        ``Array[count, C, h, w]`` float64 in [0, 1], ``C = 3`` if ``color`` else 1.
    """
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1 or h > 128 or w > 128:
        raise ValueError(f"patch size must be between 1 and 128 pixels, got {(h, w)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    images = natural_images(color)
    rng = np.random.default_rng(seed)
    share = np.full(len(images), count // len(images))
    share[: count % len(images)] += 1
    patches = []
    for (_, image), n in zip(images, share, strict=True):
        if n == 0:
            continue
        _, height, width = image.shape
        ys = rng.integers(0, height - h + 1, size=n)
        xs = rng.integers(0, width - w + 1, size=n)
        rows = ys[:, None] + np.arange(h)[None, :]  # [n, h]
        cols = xs[:, None] + np.arange(w)[None, :]  # [n, w]
        patches.append(image[:, rows[:, :, None], cols[:, None, :]].transpose(1, 0, 2, 3))
    return np.concatenate(patches, axis=0)


def natural_tiles(image_size: int, color: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Every non-overlapping ``image_size`` tile of the bundled images, in a fixed order.

    Returns:
        ``(tiles, source)``: ``Array[N, C, S, S]`` float32 in [0, 1] (image by image,
        row-major within an image) and ``Array[N]`` the index of the source image in
        :data:`NATURAL_IMAGES`.
    """
    if image_size < 8 or image_size > 512:
        raise ValueError(f"image_size must be between 8 and 512, got {image_size}")
    tiles, source = [], []
    for i, (_, image) in enumerate(natural_images(color)):
        _, height, width = image.shape
        rows, cols = height // image_size, width // image_size
        if rows == 0 or cols == 0:
            continue
        cut = image[:, :rows * image_size, :cols * image_size]
        cut = cut.reshape(cut.shape[0], rows, image_size, cols, image_size)
        tiles.append(cut.transpose(1, 3, 0, 2, 4).reshape(rows * cols, cut.shape[0],
                                                          image_size, image_size))
        source.append(np.full(rows * cols, i))
    return np.concatenate(tiles).astype(np.float32), np.concatenate(source)
