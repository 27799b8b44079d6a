"""Darcy flow data for neural operators, as `datasets` objects cached on disk.

The steady Darcy equation on the unit square

    -div(a(x) grad u(x)) = f(x),   x in (0, 1)^2,    u = 0 on the boundary,

maps a permeability a to a pressure u. Two sources give (a, u) pairs on n x n grids:

- `neuralop_darcy_16`: the small set the `neuraloperator` package shipped inside its 0.2.0 / 0.3.0 wheels
  (train 16 x 16 x 1000, test 16 x 16 x 50 and 32 x 32 x 50; MIT). Its quirks are documented in docs/darcy.md:
  a binary coefficient (stored as booleans) and a solution that is not zero on the bottom and right edges.
- `grf_darcy_<n>`: the FNO paper's recipe, generated here: a Gaussian random field with covariance
  (-Laplacian + 9 I)^-2 thresholded to a = 12 where positive and a = 3 elsewhere, f = 1, zero Dirichlet boundary,
  second-order finite differences on a grid `refine` times finer, a sparse direct solve, then subsampling.
- your own: a folder holding a `DatasetDict` saved with `save_to_disk`, or PDEBench's 2-D Darcy HDF5 files
  (`2D_DarcyFlow_beta<b>_Train.hdf5`), subsampled by a stride to the resolutions asked for.

Every split is a `datasets.Dataset` with float32 columns `coefficient` and `solution`, both (n, n); splits are
`train` and `test_<n>` for each test resolution n.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, load_from_disk
from datasets import config as datasets_config
from scipy import fft, sparse
from scipy.sparse.linalg import spsolve
from tqdm.auto import tqdm

from ..utils import atomic_directory


NEURALOP_WHEEL_VERSION = "0.3.0"
NEURALOP_FILE_PATTERN = re.compile(r"darcy_(train|test)_(\d+)\.pt$")
NEURALOP_SPLITS: dict[str, str] = {
    "train": "darcy_train_16.pt",
    "test_16": "darcy_test_16.pt",
    "test_32": "darcy_test_32.pt",
}


def default_cache_dir() -> Path:
    """`<datasets cache>/transformers_mano_darcy`, beside the other `datasets` caches."""
    return Path(datasets_config.HF_DATASETS_CACHE) / "transformers_mano_darcy"


def darcy_features(resolution: int) -> Features:
    """Features of one split at `resolution`: `coefficient` and `solution`, both float32 (n, n)."""
    shape = (resolution, resolution)
    return Features({"coefficient": Array2D(shape, "float32"), "solution": Array2D(shape, "float32")})


def to_dataset(coefficients: np.ndarray, solutions: np.ndarray) -> Dataset:
    """(N, n, n) coefficient and solution arrays -> a `Dataset` with columns `coefficient`, `solution`."""
    coefficients = np.asarray(coefficients, dtype=np.float32)
    solutions = np.asarray(solutions, dtype=np.float32)
    if (
        coefficients.shape != solutions.shape
        or coefficients.ndim != 3
        or coefficients.shape[1] != coefficients.shape[2]
    ):
        raise ValueError(f"need matching (N, n, n) arrays, got {coefficients.shape} and {solutions.shape}")
    return Dataset.from_dict(
        {"coefficient": coefficients, "solution": solutions}, features=darcy_features(coefficients.shape[1])
    )


class DarcyDataError(ValueError):
    """A Darcy data source that cannot be read: unknown name, missing file or key, or fields of the wrong shape."""


def _save_to_cache(data: DatasetDict, path: Path) -> DatasetDict:
    """`save_to_disk` into `path` atomically (a crash never leaves a half-written cache), then read it back."""
    with atomic_directory(path, overwrite=True) as staging:
        data.save_to_disk(str(staging))
    return load_from_disk(str(path))


# --- the neuraloperator set -------------------------------------------------------------------------------------


def _download_neuralop_wheel(directory: Path) -> Path:
    """`pip download --no-deps neuraloperator==0.3.0` into `directory`; the wheel's path."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            f"neuraloperator=={NEURALOP_WHEEL_VERSION}",
            "-d",
            str(directory),
            "--quiet",
        ],
        check=True,
    )
    wheels = sorted(directory.glob("neuraloperator-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no neuraloperator wheel in {directory}")
    return wheels[0]


def extract_neuralop_darcy(source: str | Path | None, destination: Path) -> Path:
    """Put the neuraloperator Darcy `.pt` files in `destination` and return it.

    Args:
        source: a neuraloperator 0.2.0 / 0.3.0 wheel, a folder holding `darcy_*.pt` files anywhere below it (e.g. an
            unpacked wheel or a neuraloperator checkout), or None to fetch the wheel from PyPI with pip.
        destination: folder that receives `darcy_train_16.pt`, `darcy_test_16.pt`, `darcy_test_32.pt`.
    """
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = _download_neuralop_wheel(Path(tmp))
        source = Path(source)
        if source.is_dir():
            for path in source.rglob("darcy_*.pt"):
                if NEURALOP_FILE_PATTERN.search(path.name):
                    shutil.copyfile(path, destination / path.name)
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as wheel:
                for member in wheel.namelist():
                    if NEURALOP_FILE_PATTERN.search(member):
                        (destination / Path(member).name).write_bytes(wheel.read(member))
        else:
            raise FileNotFoundError(f"{source} is neither a folder nor a wheel (zip) file")
    missing = [name for name in NEURALOP_SPLITS.values() if not (destination / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source} holds no {missing}; expected neuraloperator 0.2.0 / 0.3.0 data files")
    return destination


def read_neuralop_pt(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One neuraloperator Darcy file -> (coefficients, solutions), float32 (N, n, n).

    The files hold a dict {"x": bool (N, n, n), "y": float32 (N, n, n)}; the boolean coefficient becomes 0 / 1.
    """
    data = torch.load(path, map_location="cpu", weights_only=True)
    return data["x"].float().numpy(), data["y"].float().numpy()


def load_neuralop_darcy(
    cache_dir: str | Path | None = None, source: str | Path | None = None, overwrite: bool = False
) -> DatasetDict:
    """The neuraloperator small Darcy set: `train` (1000, 16x16), `test_16` (50, 16x16), `test_32` (50, 32x32).

    Converted once and cached with `save_to_disk` under `cache_dir/neuralop_darcy`; `source` as in
    `extract_neuralop_darcy` (None fetches the 0.3.0 wheel with pip, which needs PyPI).
    """
    path = Path(cache_dir or default_cache_dir()) / "neuralop_darcy"
    if path.exists() and not overwrite:
        return load_from_disk(str(path))
    with tempfile.TemporaryDirectory() as tmp:
        raw = extract_neuralop_darcy(source, Path(tmp))
        data = DatasetDict(
            {split: to_dataset(*read_neuralop_pt(raw / name)) for split, name in NEURALOP_SPLITS.items()}
        )
        return _save_to_cache(data, path)


# --- the FNO-recipe generator -----------------------------------------------------------------------------------


def sample_gaussian_random_field(
    resolution: int, rng: np.random.Generator, alpha: float = 2.0, tau: float = 3.0
) -> np.ndarray:
    """One zero-mean Gaussian random field with covariance (-Laplacian + tau^2 I)^-alpha on an n x n grid.

    A cosine series on the unit square (Neumann eigenfunctions of the Laplacian, eigenvalues pi^2 |k|^2) with
    independent normal coefficients scaled by (pi^2 |k|^2 + tau^2)^(-alpha / 2), the constant mode removed, evaluated
    at the cell centres by an inverse DCT. The overall scale is arbitrary (thresholding only reads the sign).

    Returns:
        (n, n) float64.
    """
    k = np.arange(resolution)
    eigen = np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2
    coefficients = rng.standard_normal((resolution, resolution)) * eigen ** (-alpha / 2)
    coefficients[0, 0] = 0.0
    return fft.idctn(coefficients, type=2, norm="ortho")


def threshold_coefficient(field: np.ndarray, high: float = 12.0, low: float = 3.0) -> np.ndarray:
    """The FNO recipe's two-phase permeability: `high` where the field is >= 0, `low` elsewhere."""
    return np.where(field >= 0, high, low)


def darcy_matrix(coefficient: np.ndarray, forcing: float = 1.0) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Finite-difference system `A u = b` of -div(a grad u) = f on the interior of an n x n grid, u = 0 on the edge.

    Grid points include the boundary, spacing h = 1 / (n - 1). The flux between two neighbours uses the arithmetic
    mean of their coefficients (second-order five-point stencil):
    (A u)_ij = sum over the 4 neighbours nb of a_(ij,nb) (u_ij - u_nb) / h^2, with u = 0 at boundary neighbours.

    Returns:
        A: ((n-2)^2, (n-2)^2) sparse; b: ((n-2)^2,) the forcing at the interior points (row-major).
    """
    n = coefficient.shape[0]
    if coefficient.shape != (n, n) or n < 3:
        raise ValueError(f"need a square coefficient of side >= 3, got shape {coefficient.shape}")
    m = n - 2
    inv_h2 = (n - 1) ** 2
    index = np.arange(m * m).reshape(m, m)
    interior = coefficient[1:-1, 1:-1]
    rows, cols, values = [], [], []
    diagonal = np.zeros((m, m))
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        neighbour = coefficient[1 + dy : n - 1 + dy, 1 + dx : n - 1 + dx]
        face = 0.5 * (interior + neighbour) * inv_h2  # m, m
        diagonal += face
        # couplings to interior neighbours only; a boundary neighbour carries u = 0 and drops out
        ys, xs = np.meshgrid(
            np.arange(max(0, -dy), m - max(0, dy)), np.arange(max(0, -dx), m - max(0, dx)), indexing="ij"
        )
        rows.append(index[ys, xs].ravel())
        cols.append(index[ys + dy, xs + dx].ravel())
        values.append(-face[ys, xs].ravel())
    rows.append(index.ravel())
    cols.append(index.ravel())
    values.append(diagonal.ravel())
    matrix = sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m, m * m)
    )
    return matrix, np.full(m * m, forcing)


def solve_darcy(coefficient: np.ndarray, forcing: float = 1.0) -> np.ndarray:
    """The finite-difference solution u on the full n x n grid (zero on the edge) for one coefficient (n, n)."""
    matrix, rhs = darcy_matrix(coefficient, forcing)
    n = coefficient.shape[0]
    solution = np.zeros((n, n))
    solution[1:-1, 1:-1] = spsolve(matrix.tocsc(), rhs).reshape(n - 2, n - 2)
    return solution


def generate_darcy(
    num_samples: int, resolution: int, seed: int = 0, refine: int = 4, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the FNO paper's Darcy recipe: (coefficients, solutions), float32 (N, n, n).

    Each sample is drawn and solved on a grid of side `(n - 1) * refine + 1` and subsampled by `refine`, so the
    n x n points include the boundary and the solution carries the finer grid's discretisation accuracy.
    Reproducible: sample i depends only on (`seed`, i, `resolution`, `refine`).

    Args:
        progress: show a tqdm bar; None shows it when the run is long (more than 50 samples).
    """
    if resolution < 3 or refine < 1 or num_samples < 0:
        raise ValueError(
            f"need resolution >= 3, refine >= 1, num_samples >= 0; got {resolution}, {refine}, {num_samples}"
        )
    fine = (resolution - 1) * refine + 1
    coefficients = np.empty((num_samples, resolution, resolution), dtype=np.float32)
    solutions = np.empty_like(coefficients)
    show = num_samples > 50 if progress is None else progress
    for i in tqdm(range(num_samples), desc=f"Darcy {resolution}x{resolution} (solve {fine}x{fine})", disable=not show):
        rng = np.random.default_rng([seed, i])
        coefficient = threshold_coefficient(sample_gaussian_random_field(fine, rng))
        solution = solve_darcy(coefficient)
        coefficients[i] = coefficient[::refine, ::refine]
        solutions[i] = solution[::refine, ::refine]
    return coefficients, solutions


def load_generated_darcy(
    train_resolution: int = 16,
    test_resolutions: tuple[int, ...] = (16, 32),
    num_train: int = 1000,
    num_test: int = 100,
    seed: int = 0,
    refine: int = 4,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
) -> DatasetDict:
    """Generated Darcy data: `train` at `train_resolution`, `test_<n>` at each test resolution, cached on disk.

    Train and test splits draw from disjoint seeds (`2 seed` for train, `2 seed + 1 + 1000 n` for the test at n),
    so no test sample is a training sample. The cache key holds every argument.
    """
    name = f"grf_darcy_{train_resolution}_n{num_train}_t{'-'.join(map(str, test_resolutions))}_n{num_test}_s{seed}_r{refine}"
    path = Path(cache_dir or default_cache_dir()) / name
    if path.exists() and not overwrite:
        return load_from_disk(str(path))
    splits = {"train": to_dataset(*generate_darcy(num_train, train_resolution, seed=2 * seed, refine=refine))}
    for resolution in test_resolutions:
        test_seed = 2 * seed + 1 + 1000 * resolution
        splits[f"test_{resolution}"] = to_dataset(*generate_darcy(num_test, resolution, seed=test_seed, refine=refine))
    return _save_to_cache(DatasetDict(splits), path)


# --- your own data -------------------------------------------------------------------------------------------

PDEBENCH_KEYS = {"coefficient": "nu", "solution": "tensor"}


def check_darcy_splits(data: DatasetDict, source: str) -> DatasetDict:
    """Refuse a `DatasetDict` that is not Darcy data: it needs `train` and `test_<n>` splits whose `coefficient`
    and `solution` columns hold square (n, n) fields of the same shape (n from the split name for tests)."""
    if "train" not in data or not any(re.fullmatch(r"test_\d+", split) for split in data):
        raise DarcyDataError(f"{source} needs a 'train' split and 'test_<n>' splits, it has {list(data)}")
    for split, dataset in data.items():
        missing = [column for column in ("coefficient", "solution") if column not in dataset.column_names]
        if missing:
            raise DarcyDataError(
                f"split {split!r} of {source} has no column {missing}; its columns: {dataset.column_names}"
            )
        first = dataset.with_format("numpy")[:1]
        shapes = {column: np.asarray(first[column]).shape[1:] for column in ("coefficient", "solution")}
        if shapes["coefficient"] != shapes["solution"]:
            raise DarcyDataError(
                f"split {split!r} of {source}: coefficient {shapes['coefficient']} and solution "
                f"{shapes['solution']} fields differ in shape"
            )
        shape = shapes["coefficient"]
        if len(shape) != 2 or shape[0] != shape[1]:
            raise DarcyDataError(
                f"split {split!r} of {source} holds fields of shape {shape}; square (n, n) grids needed"
            )
        match = re.fullmatch(r"test_(\d+)", split)
        if match and int(match.group(1)) != shape[0]:
            raise DarcyDataError(
                f"split {split!r} of {source} holds {shape[0]}x{shape[1]} fields, not "
                f"{match.group(1)}x{match.group(1)}"
            )
    return data


def load_darcy_folder(path: str | Path) -> DatasetDict:
    """A `DatasetDict` saved with `save_to_disk` (columns `coefficient`, `solution`; splits `train`, `test_<n>`)."""
    path = Path(path)
    try:
        data = load_from_disk(str(path))
    except FileNotFoundError as error:
        raise DarcyDataError(f"{path} is not a folder written by DatasetDict.save_to_disk: {error}") from None
    if not isinstance(data, DatasetDict):
        raise DarcyDataError(f"{path} holds a single Dataset; save a DatasetDict with 'train' and 'test_<n>' splits")
    return check_darcy_splits(data, str(path))


def subsample_stride(side: int, resolution: int, source: str) -> int:
    """The stride that takes an n x n grid to `resolution` points per side (n must be a multiple)."""
    if resolution < 2 or side % resolution:
        raise DarcyDataError(
            f"{source} has {side}x{side} fields; {resolution} points per side is not reachable by a "
            f"stride (use a divisor of {side})"
        )
    return side // resolution


def read_pdebench_darcy(
    path: str | Path, train_resolution: int, test_resolutions: Sequence[int], num_test: int = 100, seed: int = 0
) -> DatasetDict:
    """PDEBench's 2-D Darcy file as `train` at `train_resolution` and `test_<n>` at each test resolution.

    The file holds `nu` (N, s, s), the coefficient, and `tensor` (N, 1, s, s), the solution, on an s x s grid
    (s = 128). Fields are subsampled by a stride (`[::s // n, ::s // n]`). A fixed held-out set of `num_test`
    samples, drawn with `seed`, forms every test split, at each resolution; the rest is `train`.
    """
    try:
        import h5py
    except ImportError as error:
        raise ImportError(
            "reading PDEBench HDF5 files needs h5py: pip install 'transformers-mano[physics]'"
        ) from error
    path = Path(path)
    if not path.is_file():
        raise DarcyDataError(f"{path} does not exist")
    with h5py.File(path, "r") as file:
        missing = [key for key in PDEBENCH_KEYS.values() if key not in file]
        if missing:
            raise DarcyDataError(
                f"{path} has no {missing} dataset(s); PDEBench Darcy files hold 'nu' (N, s, s) and "
                f"'tensor' (N, 1, s, s); this file holds {sorted(file)}"
            )
        coefficient, solution = file[PDEBENCH_KEYS["coefficient"]], file[PDEBENCH_KEYS["solution"]]
        if solution.ndim == 4 and solution.shape[1] == 1:
            solution_shape = (solution.shape[0], *solution.shape[2:])
        else:
            solution_shape = solution.shape
        if coefficient.ndim != 3 or coefficient.shape != solution_shape:
            raise DarcyDataError(
                f"{path}: 'nu' {coefficient.shape} and 'tensor' {solution.shape} do not describe "
                "the same (N, s, s) fields (expected 'tensor' as (N, 1, s, s))"
            )
        num_samples, height, width = coefficient.shape
        if height != width:
            raise DarcyDataError(f"{path} holds {height}x{width} grids; square grids needed")
        if not 0 < num_test < num_samples:
            raise DarcyDataError(f"{path} has {num_samples} samples; num_test must be in [1, {num_samples - 1}]")
        order = np.random.default_rng(seed).permutation(num_samples)
        test_index, train_index = np.sort(order[:num_test]), np.sort(order[num_test:])
        source = str(path)
        splits = {}
        for name, index, resolutions in (
            ("train", train_index, [train_resolution]),
            ("test", test_index, list(test_resolutions)),
        ):
            fields_a = coefficient[index]  # h5py reads sorted fancy indices
            fields_u = solution[index].reshape(len(index), height, width)
            for resolution in resolutions:
                stride = subsample_stride(height, resolution, source)
                split = "train" if name == "train" else f"test_{resolution}"
                splits[split] = to_dataset(fields_a[:, ::stride, ::stride], fields_u[:, ::stride, ::stride])
    return DatasetDict(splits)


def load_darcy(
    name: str,
    cache_dir: str | Path | None = None,
    source: str | Path | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    train_resolution: int = 16,
    test_resolutions: Sequence[int] = (16, 32),
) -> DatasetDict:
    """A Darcy data set: a name, or your own files.

    - `neuralop_darcy_16`: the neuraloperator small set (train 16, tests 16 and 32).
    - `grf_darcy_<n>`: generated, train and test at n, test also at 2n.
    - a folder: a `DatasetDict` saved with `save_to_disk` (splits `train`, `test_<n>`).
    - a `.hdf5` / `.h5` file: PDEBench 2-D Darcy, subsampled to `train_resolution` and `test_resolutions`, with a
      held-out test set of `num_test` samples (default 100) drawn with `seed`.

    Every split has columns `coefficient`, `solution`. `num_train` / `num_test` keep the first samples of a split
    (or size the generated set; default 1000 / 100).
    """
    path = Path(name)
    if name == "neuralop_darcy_16":
        data = load_neuralop_darcy(cache_dir, source)
    elif match := re.fullmatch(r"grf_darcy_(\d+)", name):
        resolution = int(match.group(1))
        return load_generated_darcy(
            resolution, (resolution, 2 * resolution), num_train or 1000, num_test or 100, seed, cache_dir=cache_dir
        )
    elif path.suffix in (".hdf5", ".h5"):
        data = read_pdebench_darcy(path, train_resolution, test_resolutions, num_test or 100, seed)
        num_test = None  # already sized
    elif path.is_dir():
        data = load_darcy_folder(path)
    else:
        raise DarcyDataError(
            f"unknown Darcy data {name!r}: use 'neuralop_darcy_16', 'grf_darcy_<n>', a folder written by "
            "DatasetDict.save_to_disk, or a PDEBench .hdf5 file"
        )
    if num_train is not None:
        data["train"] = data["train"].select(range(min(num_train, len(data["train"]))))
    if num_test is not None:
        for split in [s for s in data if s.startswith("test_")]:
            data[split] = data[split].select(range(min(num_test, len(data[split]))))
    return data


def grid_layout_of(name: str) -> str:
    """Where the grid points of a Darcy source sit on each axis (`ManoOperatorConfig.grid_layout`): "strided" for
    the neuraloperator and PDEBench files (subsampled by a stride: the first end kept, the last dropped), "corners"
    for generated data (both ends) and, unless told otherwise, for folders."""
    if name == "neuralop_darcy_16" or Path(name).suffix in (".hdf5", ".h5"):
        return "strided"
    return "corners"


def split_resolutions(data: DatasetDict) -> list[int]:
    """Resolutions of the `test_<n>` splits, ascending."""
    return sorted(int(split.split("_")[1]) for split in data if split.startswith("test_"))


def as_tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """A split as channel-last float32 tensors: coefficients (N, n, n, 1) and solutions (N, n, n, 1)."""
    data = dataset.with_format("numpy")
    coefficients = torch.from_numpy(np.asarray(data["coefficient"], dtype=np.float32))[..., None]
    solutions = torch.from_numpy(np.asarray(data["solution"], dtype=np.float32))[..., None]
    return coefficients, solutions


__all__ = [
    "NEURALOP_SPLITS",
    "PDEBENCH_KEYS",
    "DarcyDataError",
    "check_darcy_splits",
    "load_darcy_folder",
    "read_pdebench_darcy",
    "grid_layout_of",
    "subsample_stride",
    "as_tensors",
    "darcy_features",
    "darcy_matrix",
    "default_cache_dir",
    "extract_neuralop_darcy",
    "generate_darcy",
    "load_darcy",
    "load_generated_darcy",
    "load_neuralop_darcy",
    "read_neuralop_pt",
    "sample_gaussian_random_field",
    "solve_darcy",
    "split_resolutions",
    "threshold_coefficient",
    "to_dataset",
]
