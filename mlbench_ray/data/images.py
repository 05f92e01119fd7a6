"""Image datasets: CIFAR-10 and Fashion-MNIST through torchvision, and a synthetic stand-in.

The driver calls `prepare_image_dataset` once, before Ray starts: it downloads when allowed, verifies
checksums and parses the files, so that a missing or corrupt dataset fails in the first seconds with
the path and the fix. Each worker then calls `load_image_dataset` and keeps the whole dataset in memory
as uint8 tensors. Augmentation runs per batch on tensors (`augment_batch`), so no DataLoader process
is needed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets as tv_datasets
from torchvision.datasets.utils import extract_archive

from mlbench_ray.config import DataSpec
from mlbench_ray.data.errors import DataError

logger = logging.getLogger(__name__)

# Per-channel statistics of the training sets (CIFAR-10 values as MLBench uses them).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

DATASET_LABELS = {"cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST", "synthetic": "synthetic"}


@dataclass(frozen=True)
class DatasetInfo:
    """Dataset record of a run, as stored in the results."""

    name: str
    root: str
    verification: str  # "verified", "not verified" or "synthetic"
    train_samples: int
    test_samples: int

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "label": DATASET_LABELS[self.name],
            "root": self.root,
            "verification": self.verification,
            "train_samples": self.train_samples,
            "test_samples": self.test_samples,
        }


@dataclass
class ImageData:
    """A whole image dataset in memory: uint8 NCHW images and int64 labels."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])


def _md5(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def _check_files(folder: Path, expected: list[tuple[str, str]], verify: bool, dataset: str) -> None:
    """Raise DataError naming every missing file, or the first file whose MD5 differs."""
    missing = [name for name, _ in expected if not (folder / name).is_file()]
    if missing:
        raise DataError(
            f"{dataset}: {len(missing)} file(s) missing in {folder}: {', '.join(missing)}. "
            f"Set data.download: true (or pass --download) to fetch them, or point --data-root at a "
            f"folder that contains the complete dataset."
        )
    if not verify:
        return
    for name, expected_md5 in expected:
        actual = _md5(folder / name)
        if actual != expected_md5:
            raise DataError(
                f"{dataset}: checksum mismatch for {folder / name}: MD5 {actual}, expected {expected_md5}. "
                f"Delete the file and download again (data.download: true), or, for your own data in "
                f"this layout, set data.verify_checksums: false (results then say 'not verified')."
            )


def _cifar10_class(verify: bool) -> type[tv_datasets.CIFAR10]:
    if verify:
        return tv_datasets.CIFAR10

    # torchvision checks MD5s on every load; with verification off, the checksums are blanked, which
    # makes torchvision check only that each file exists.
    class UnverifiedCIFAR10(tv_datasets.CIFAR10):
        train_list = [[name, None] for name, _ in tv_datasets.CIFAR10.train_list]
        test_list = [[name, None] for name, _ in tv_datasets.CIFAR10.test_list]
        meta = {**tv_datasets.CIFAR10.meta, "md5": None}

    return UnverifiedCIFAR10


def _cifar10_expected_files() -> list[tuple[str, str]]:
    listed = tv_datasets.CIFAR10.train_list + tv_datasets.CIFAR10.test_list
    meta = tv_datasets.CIFAR10.meta
    return [(name, md5) for name, md5 in listed] + [(meta["filename"], meta["md5"])]


def _prepare_cifar10(spec: DataSpec) -> None:
    folder = spec.root / tv_datasets.CIFAR10.base_folder
    if spec.download:
        spec.root.mkdir(parents=True, exist_ok=True)
        try:
            tv_datasets.CIFAR10(str(spec.root), train=True, download=True)
        except Exception as exc:  # network errors come in many types; the message carries the cause
            raise DataError(
                f"CIFAR-10 download into {spec.root} failed: {exc}. Check network access, or copy "
                f"cifar-10-batches-py/ there by hand and set data.download: false."
            ) from exc
    elif not spec.root.is_dir():
        raise DataError(
            f"data root {spec.root} does not exist. Pass --data-root with the folder that contains "
            f"cifar-10-batches-py/, or set data.download: true (--download) to fetch CIFAR-10 there."
        )
    _check_files(folder, _cifar10_expected_files(), spec.verify_checksums, "CIFAR-10")


def _fashion_mnist_raw(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _prepare_fashion_mnist(spec: DataSpec) -> None:
    raw = _fashion_mnist_raw(spec.root)
    resources = tv_datasets.FashionMNIST.resources
    if spec.download:
        spec.root.mkdir(parents=True, exist_ok=True)
        try:
            tv_datasets.FashionMNIST(str(spec.root), train=True, download=True)
        except Exception as exc:  # network errors come in many types; the message carries the cause
            raise DataError(
                f"Fashion-MNIST download into {raw} failed: {exc}. Check network access, or copy the "
                f"four *-ubyte.gz files there by hand and set data.download: false."
            ) from exc
    elif not spec.root.is_dir():
        raise DataError(
            f"data root {spec.root} does not exist. Pass --data-root with the folder that contains "
            f"FashionMNIST/raw/, or set data.download: true (--download)."
        )

    gz_present = all((raw / name).is_file() for name, _ in resources)
    if spec.verify_checksums:
        if not gz_present:
            _check_files(raw, list(resources), True, "Fashion-MNIST")
        for name, expected_md5 in resources:
            actual = _md5(raw / name)
            if actual != expected_md5:
                raise DataError(
                    f"Fashion-MNIST: checksum mismatch for {raw / name}: MD5 {actual}, expected "
                    f"{expected_md5} (the file torchvision downloads). A repackaged copy, such as "
                    f"Debian's dataset-fashion-mnist, is recompressed and differs: set "
                    f"data.verify_checksums: false to use it (results then say 'not verified')."
                )

    # torchvision reads the uncompressed IDX files; extract the archives that have no IDX file yet.
    for name, _ in resources:
        idx_file = raw / name.removesuffix(".gz")
        if not idx_file.is_file() and (raw / name).is_file():
            extract_archive(str(raw / name), str(raw))
    missing = [
        name.removesuffix(".gz") for name, _ in resources if not (raw / name.removesuffix(".gz")).is_file()
    ]
    if missing:
        raise DataError(
            f"Fashion-MNIST: {len(missing)} file(s) missing in {raw}: {', '.join(missing)} (or their .gz). "
            f"Copy them there (Debian's dataset-fashion-mnist installs them in "
            f"/usr/share/datasets/fashion-mnist), or set data.download: true."
        )


def prepare_image_dataset(spec: DataSpec) -> DatasetInfo:
    """Download (when allowed), verify and parse the dataset once; return what the results record."""
    if spec.dataset == "cifar10":
        _prepare_cifar10(spec)
    elif spec.dataset == "fashion_mnist":
        _prepare_fashion_mnist(spec)

    # Parsing catches truncated or corrupt files that were not checked against a checksum.
    data = load_image_dataset(spec)
    verification = (
        "synthetic"
        if spec.dataset == "synthetic"
        else ("verified" if spec.verify_checksums else "not verified")
    )
    return DatasetInfo(
        name=spec.dataset,
        root=str(spec.root.resolve()) if spec.dataset != "synthetic" else "",
        verification=verification,
        train_samples=int(data.train_labels.numel()),
        test_samples=int(data.test_labels.numel()),
    )


def _synthetic(spec: DataSpec) -> ImageData:
    # Fixed seed: every trial and every rank gets the same dataset. Each class is a smooth random
    # colour pattern (4x4, upsampled) plus pixel noise, so a small CNN learns it within a few epochs.
    generator = torch.Generator().manual_seed(1234)
    num_classes = 10
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator) * 255
    templates = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, num_classes, (count,), generator=generator)
        noise = torch.randn(count, 3, 32, 32, generator=generator) * 40
        images = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)
        return images, labels

    train_images, train_labels = make(spec.synthetic_train_samples)
    test_images, test_labels = make(spec.synthetic_test_samples)
    return ImageData(train_images, train_labels, test_images, test_labels, (0.5,) * 3, (0.25,) * 3, 10)


def load_image_dataset(spec: DataSpec) -> ImageData:
    """Load the whole dataset into memory; the files must already be in place (see prepare)."""
    if spec.dataset == "synthetic":
        return _synthetic(spec)

    try:
        if spec.dataset == "cifar10":
            cifar_class = _cifar10_class(spec.verify_checksums)
            train = cifar_class(str(spec.root), train=True, download=False)
            test = cifar_class(str(spec.root), train=False, download=False)
            # torchvision stores CIFAR-10 as NHWC uint8 numpy arrays.
            return ImageData(
                torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(train.targets, dtype=torch.int64),
                torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(test.targets, dtype=torch.int64),
                CIFAR10_MEAN,
                CIFAR10_STD,
                10,
            )
        train = tv_datasets.FashionMNIST(str(spec.root), train=True, download=False)
        test = tv_datasets.FashionMNIST(str(spec.root), train=False, download=False)
        return ImageData(
            train.data.unsqueeze(1).contiguous(),
            train.targets.to(torch.int64),
            test.data.unsqueeze(1).contiguous(),
            test.targets.to(torch.int64),
            FASHION_MNIST_MEAN,
            FASHION_MNIST_STD,
            10,
        )
    except DataError:
        raise
    except Exception as exc:  # torchvision and pickle raise many types for truncated or corrupt files
        raise DataError(
            f"{DATASET_LABELS[spec.dataset]} under {spec.root} could not be read: "
            f"{type(exc).__name__}: {exc}. On a worker node, check that this folder exists there "
            f"(data.root must be readable on every node). Otherwise the files may be truncated or "
            f"corrupt: delete them and download again (data.download: true)."
        ) from exc


def augment_batch(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Randomly crop (zero padding `padding`) and horizontally flip each image of a uint8 NCHW batch.

    Each image gets its own offsets and flip, as torchvision's RandomCrop and RandomHorizontalFlip give
    per sample, but the whole batch is done in a few tensor operations.
    """
    batch, channels, height, width = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    # Random draws come from a CPU generator, so the same seed gives the same crops on any device.
    offsets_y = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(device)
    offsets_x = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(device)
    flips = (torch.rand(batch, generator=generator) < 0.5).to(device)

    rows = offsets_y[:, None] + torch.arange(height, device=device)  # [B, H]
    cols = offsets_x[:, None] + torch.arange(width, device=device)  # [B, W]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(batch, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Convert uint8 images to normalized float32."""
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t
