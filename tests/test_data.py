"""Datasets in their real on-disk layouts: loading, checks and augmentation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torchvision import datasets as tv_datasets

from mlbench_ray.config import DataSpec
from mlbench_ray.data.errors import DataError
from mlbench_ray.data.images import augment_batch, load_image_dataset, prepare_image_dataset
from tests.helpers import write_cifar10, write_fashion_mnist_gz


def test_cifar10_layout_loads_unverified(tmp_path: Path) -> None:
    """CIFAR-10 batches written in torchvision's layout load with verification off."""
    write_cifar10(tmp_path, train_per_batch=20, test_samples=30)
    info = prepare_image_dataset(DataSpec(dataset="cifar10", root=tmp_path, verify_checksums=False))
    assert info.verification == "not verified"
    assert (info.train_samples, info.test_samples) == (100, 30)
    data = load_image_dataset(DataSpec(dataset="cifar10", root=tmp_path, verify_checksums=False))
    assert data.train_images.shape == (100, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8


def test_cifar10_checksum_mismatch_names_file(tmp_path: Path) -> None:
    """With verification on, a file whose MD5 differs from torchvision's is named with the fix."""
    folder = write_cifar10(tmp_path)
    with pytest.raises(DataError) as caught:
        prepare_image_dataset(DataSpec(dataset="cifar10", root=tmp_path))
    message = str(caught.value)
    assert str(folder / "data_batch_1") in message
    assert "checksum mismatch" in message
    assert "verify_checksums: false" in message


def test_cifar10_verified_when_checksums_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files whose MD5s match the published list are recorded as verified."""
    folder = write_cifar10(tmp_path, train_per_batch=10, test_samples=10)

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    # Publish this test data's own checksums in place of the real ones.
    monkeypatch.setattr(
        tv_datasets.CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")] for i in range(1, 6)]
    )
    monkeypatch.setattr(tv_datasets.CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(tv_datasets.CIFAR10, "meta", {**tv_datasets.CIFAR10.meta, "md5": md5("batches.meta")})
    info = prepare_image_dataset(DataSpec(dataset="cifar10", root=tmp_path))
    assert info.verification == "verified"


def test_cifar10_missing_file_named(tmp_path: Path) -> None:
    """A missing batch file is named, with the download and --data-root fixes."""
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as caught:
        prepare_image_dataset(DataSpec(dataset="cifar10", root=tmp_path, verify_checksums=False))
    assert "data_batch_3" in str(caught.value)
    assert "data.download: true" in str(caught.value)


def test_missing_data_root_named(tmp_path: Path) -> None:
    """A data root that does not exist is named with the fix."""
    root = tmp_path / "absent"
    with pytest.raises(DataError, match="does not exist") as caught:
        prepare_image_dataset(DataSpec(dataset="cifar10", root=root))
    assert str(root) in str(caught.value)


def test_truncated_cifar10_file_rejected(tmp_path: Path) -> None:
    """An unverified but truncated batch file fails to parse with an error that names the dataset root."""
    folder = write_cifar10(tmp_path)
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or corrupt") as caught:
        prepare_image_dataset(DataSpec(dataset="cifar10", root=tmp_path, verify_checksums=False))
    assert str(tmp_path) in str(caught.value)


def test_fashion_mnist_gz_extracted_and_loaded(tmp_path: Path) -> None:
    """Gzipped IDX files in FashionMNIST/raw are extracted and loaded as 1-channel images."""
    raw = write_fashion_mnist_gz(tmp_path, train=40, test=12)
    info = prepare_image_dataset(DataSpec(dataset="fashion_mnist", root=tmp_path, verify_checksums=False))
    assert (raw / "train-images-idx3-ubyte").is_file()
    assert (info.train_samples, info.test_samples) == (40, 12)
    data = load_image_dataset(DataSpec(dataset="fashion_mnist", root=tmp_path, verify_checksums=False))
    assert data.train_images.shape == (40, 1, 28, 28)


def test_fashion_mnist_repackaged_copy_needs_opt_out(tmp_path: Path) -> None:
    """Recompressed files fail verification with a message that names the opt-out."""
    raw = write_fashion_mnist_gz(tmp_path)
    with pytest.raises(DataError, match="verify_checksums: false") as caught:
        prepare_image_dataset(DataSpec(dataset="fashion_mnist", root=tmp_path))
    assert str(raw) in str(caught.value)


def test_synthetic_labelled_and_fixed() -> None:
    """The synthetic dataset is labelled synthetic and is the same on every call."""
    spec = DataSpec(dataset="synthetic", synthetic_train_samples=16, synthetic_test_samples=8)
    assert prepare_image_dataset(spec).verification == "synthetic"
    assert torch.equal(load_image_dataset(spec).train_images, load_image_dataset(spec).train_images)


def test_augment_batch_crops_and_flips_per_sample() -> None:
    """Each output image is a 32x32 window of its zero-padded input, flipped or not."""
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    out = augment_batch(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flipped_count = 0
    for index in range(16):
        windows = [
            (padded[index, :, y : y + 32, x : x + 32], flip)
            for y in range(9)
            for x in range(9)
            for flip in (False, True)
        ]
        matches = [
            flip for window, flip in windows if torch.equal(window.flip(-1) if flip else window, out[index])
        ]
        assert matches, f"image {index} is not a crop of its padded input"
        flipped_count += matches[0]
    assert 0 < flipped_count < 16
