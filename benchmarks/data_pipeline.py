"""Data pipeline throughput: segzoo's training preset vs the seed tutorial's PIL + torchvision pipeline.

Both deliver the same thing: batches of normalised float32 images and class-id masks, after the
same work per sample at the same crop size (decode image and mask, random scale 0.5-2, pad,
random crop, horizontal flip, colour jitter). segzoo's workers deliver uint8 and the batch is
normalised in the consuming loop (timed here; on a GPU it runs on the device); the seed
tutorial normalises per sample in the workers. Same worker count and batch size, side by side
in one process, alternating repeats; the median images/s is reported.

    python -m benchmarks.data_pipeline --size 512 --workers 2 --images 48 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._report import write_result


def make_images(root: Path, n: int, size: int) -> list[tuple[Path, Path]]:
    """JPEG photos-like images (smooth gradients plus noise) and PNG class-id masks, ``size`` x ``size``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    pairs = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        base = (np.sin(xx / rng.uniform(20, 80))[..., None] * 60 + rng.uniform(60, 180, 3)).astype(np.float32)
        image = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        mask = ((xx // rng.integers(30, 90) + yy // rng.integers(30, 90)) % 5).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:04d}.jpg", quality=90)
        Image.fromarray(mask).save(root / "masks" / f"{i:04d}.png")
        pairs.append((root / "images" / f"{i:04d}.jpg", root / "masks" / f"{i:04d}.png"))
    return pairs


class SeedTutorialDataset(torch.utils.data.Dataset):
    """The common tutorial pipeline: PIL decode, torchvision functional transforms applied jointly."""

    def __init__(self, pairs, crop: int) -> None:
        import torchvision.transforms as T

        self.pairs, self.crop = pairs, crop
        self.jitter = T.ColorJitter(0.2, 0.2, 0.2, 0.05)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i):
        import torchvision.transforms.functional as TF
        from PIL import Image
        from torchvision.transforms import InterpolationMode

        image = Image.open(self.pairs[i][0]).convert("RGB")
        mask = Image.open(self.pairs[i][1])
        s = random.uniform(0.5, 2.0)
        w, h = image.size
        size = [int(h * s), int(w * s)]
        image = TF.resize(image, size, interpolation=InterpolationMode.BILINEAR)
        mask = TF.resize(mask, size, interpolation=InterpolationMode.NEAREST)
        pad_h, pad_w = max(0, self.crop - size[0]), max(0, self.crop - size[1])
        if pad_h or pad_w:
            image = TF.pad(image, [0, 0, pad_w, pad_h], fill=0)
            mask = TF.pad(mask, [0, 0, pad_w, pad_h], fill=255)
        top = random.randint(0, image.size[1] - self.crop)
        left = random.randint(0, image.size[0] - self.crop)
        image = TF.crop(image, top, left, self.crop, self.crop)
        mask = TF.crop(mask, top, left, self.crop, self.crop)
        if random.random() < 0.5:
            image, mask = TF.hflip(image), TF.hflip(mask)
        if random.random() < 0.8:
            image = self.jitter(image)
        x = TF.normalize(TF.to_tensor(image), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        return x, torch.as_tensor(np.array(mask), dtype=torch.long)


def segzoo_dataset(pairs, crop: int):
    from segzoo.data import MaskDecoder, SegmentationDataset, train_preset

    return SegmentationDataset(pairs, MaskDecoder(5), train_preset(crop, scale=(0.5, 2.0), colour_jitter=0.2))


def segzoo_throughput(dataset, workers: int, batch: int) -> float:
    """segzoo's loader delivers uint8 batches; the (timed) normalisation makes them the same float batches."""
    from segzoo.core.config import Preprocessing
    from segzoo.data import normalize
    from segzoo.data.dataset import make_loader

    pre = Preprocessing()
    loader = make_loader(dataset, batch, num_workers=workers, shuffle=True, drop_last=True)
    n, t0 = 0, time.perf_counter()
    for images, _ in loader:
        x = normalize(images, pre)
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def seed_throughput(dataset, workers: int, batch: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    n, t0 = 0, time.perf_counter()
    for images, _ in loader:
        n += images.shape[0]
    return n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=512, help="crop size (source images are 1.25x larger)")
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", help="an images/ + masks/ folder to use instead of generated images")
    p.add_argument("--output", default=str(Path(__file__).parent / "results" / "data_pipeline.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            from segzoo.data import folder_pairs

            pairs = folder_pairs(args.data)[: args.images]
        else:
            pairs = make_images(Path(tmp), args.images, int(args.size * 1.25))
        ours, seed = segzoo_dataset(pairs, args.size), SeedTutorialDataset(pairs, args.size)
        segzoo_throughput(ours, args.workers, args.batch)  # warm-up: page cache, worker start-up code paths
        seed_throughput(seed, args.workers, args.batch)
        runs = {"segzoo": [], "seed_tutorial": []}
        for _ in range(args.repeats):  # interleaved
            runs["segzoo"].append(segzoo_throughput(ours, args.workers, args.batch))
            runs["seed_tutorial"].append(seed_throughput(seed, args.workers, args.batch))
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "benchmark": "data_pipeline", "crop": args.size, "images": len(pairs), "workers": args.workers,
        "batch": args.batch, "repeats": args.repeats, "images_per_s": med, "runs": runs,
        "ratio_segzoo_over_seed": med["segzoo"] / med["seed_tutorial"],
    }
    return write_result(result, args.output, ("images_per_s", "ratio_segzoo_over_seed"))


if __name__ == "__main__":
    main()
