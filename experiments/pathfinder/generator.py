"""Pathfinder: are the two markers the two ends of one dashed curve? A long-range image task, generated.

After the task of Linsley et al. (NeurIPS 2018), used by the Long Range Arena (Tay et al., ICLR 2021), written from
its published description. A scene holds a few smooth dashed curves ("paddles" of a few pixels with gaps between
them) and loose paddles; two round markers sit on curve ends. The label is 1 ("connected") when the markers are the
two ends of one curve and 0 ("disconnected") when they are ends of two different curves. Difficulty grows with the
curve length (paddles per curve) and the number of distractor curves.

Both classes come from the same kind of scene: the scene is drawn first, without knowing the label, and only the
second marker's place depends on it. For a negative, the second marker goes on the end of a distractor curve whose
distance to the first marker is closest to the target curve's end-to-end distance, so the distance between the
markers says as little as it can about the label (`marker_distance_cue` measures what it still says).

Every image is a function of (seed, split, index) alone, so a data set is reproducible piece by piece and the
splits never share a scene.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage
from PIL import ImageDraw
from tqdm.auto import tqdm

from transformers_mano.utils.io import atomic_directory


LABEL_NAMES = ("disconnected", "connected")
# Stream ids per split, so the test scenes are never the training scenes of any seed's run.
SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}
# Curves and markers are drawn on a canvas this many times larger, then averaged down (anti-aliasing).
SUPERSAMPLE = 4
# Largest difference between the marker distance of a scene's two labels, in pixels at 32 px: a scene offering no
# pair of marker pairs this close is drawn again (so the distance alone says little about the label).
MARKER_DISTANCE_TOLERANCE = 0.5


@dataclass(frozen=True)
class PathfinderSpec:
    """What a Pathfinder image looks like. Lengths are in pixels of a 32-pixel image and scale with `image_size`.

    contour_length: paddles per curve (the difficulty: LRA's Pathfinder uses 6, 9 and 14 at 32 px).
    num_distractors: curves besides the target one.
    num_loose_paddles: single paddles scattered as clutter.
    paddle_length, gap_length: one dash and the space after it.
    max_turn: largest change of direction between two paddles, in radians (the curves' smoothness).
    marker_radius, line_width: in pixels at 32 px.
    """

    image_size: int = 32
    contour_length: int = 6
    num_distractors: int = 1
    num_loose_paddles: int = 4
    paddle_length: float = 2.5
    gap_length: float = 1.5
    max_turn: float = math.pi / 4
    marker_radius: float = 1.3
    line_width: float = 1.0

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"Pathfinder image_size must be at least 16 pixels, got {self.image_size}")
        if self.contour_length < 2:
            raise ValueError(f"Pathfinder contour_length must be at least 2 paddles, got {self.contour_length}")
        if self.num_distractors < 1:
            raise ValueError(
                f"Pathfinder num_distractors must be at least 1 (a negative needs a second curve), got "
                f"{self.num_distractors}"
            )
        if self.num_loose_paddles < 0:
            raise ValueError(f"Pathfinder num_loose_paddles must be >= 0, got {self.num_loose_paddles}")

    @property
    def scale(self) -> float:
        return self.image_size / 32.0


@dataclass(frozen=True)
class PathfinderScene:
    """One drawn scene: its curves as polylines of paddles, and the two marker centres (in pixels)."""

    curves: list[np.ndarray]  # each (num_paddles, 2, 2): paddle, (start, end), (x, y)
    loose: list[np.ndarray]  # each (1, 2, 2)
    markers: tuple[np.ndarray, np.ndarray]
    label: int


class _Occupancy:
    """Which cells of a coarse grid lie near a drawn stroke, to keep curves from touching.

    Adding a stroke blocks its cells and the 8 around each, so testing a new stroke is one lookup per point.
    """

    def __init__(self, image_size: int, clearance: float):
        self.cell = max(clearance, 1e-6)
        self.side = int(math.ceil(image_size / self.cell)) + 1
        self.blocked = np.zeros((self.side + 2, self.side + 2), dtype=bool)  # one cell of padding on each side

    def _cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells = np.clip((points / self.cell).astype(int), 0, self.side - 1) + 1  # + 1: the padding
        return cells[:, 1], cells[:, 0]  # rows (y), columns (x)

    def free(self, points: np.ndarray) -> bool:
        rows, cols = self._cells(points)
        return not self.blocked[rows, cols].any()

    def add(self, points: np.ndarray) -> None:
        rows, cols = self._cells(points)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                self.blocked[rows + dr, cols + dc] = True


def _sample_points(paddles: np.ndarray, step: float) -> np.ndarray:
    """Points along every paddle, at most `step` apart: (P, 2)."""
    starts, ends = paddles[:, 0], paddles[:, 1]
    count = max(2, int(math.ceil(np.linalg.norm(ends[0] - starts[0]) / step)) + 1)
    t = np.linspace(0.0, 1.0, count)[None, :, None]
    return (starts[:, None] + t * (ends - starts)[:, None]).reshape(-1, 2)


def _draw_curve(
    rng: np.random.Generator, spec: PathfinderSpec, num_paddles: int, occupancy: _Occupancy, tries: int = 200
) -> np.ndarray | None:
    """A smooth dashed curve of `num_paddles` paddles inside the image, clear of what is drawn; None if none fits."""
    s = spec.scale
    margin = 2.0 * spec.marker_radius * s
    low, high = margin, spec.image_size - margin
    paddle, gap = spec.paddle_length * s, spec.gap_length * s
    for _ in range(tries):
        start = rng.uniform(low, high, size=2)
        turns = rng.uniform(-spec.max_turn, spec.max_turn, size=num_paddles)
        turns[0] = rng.uniform(0.0, 2.0 * math.pi)  # the first "turn" is the curve's initial direction
        angles = np.cumsum(turns)
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # num_paddles, 2
        # each paddle starts one paddle and one gap after the previous one, along the previous direction
        steps = np.concatenate([np.zeros((1, 2)), np.cumsum((paddle + gap) * directions[:-1], axis=0)])
        starts = start + steps
        paddles = np.stack([starts, starts + paddle * directions], axis=1)  # num_paddles, (start, end), (x, y)
        if paddles.min() < low or paddles.max() > high:
            continue
        points = _sample_points(paddles, step=0.5 * occupancy.cell)
        if occupancy.free(points):
            occupancy.add(points)
            return paddles
    return None


def _draw_curves(spec: PathfinderSpec, rng: np.random.Generator) -> tuple[list[np.ndarray], _Occupancy]:
    """The target and distractor curves, clear of each other; the scene restarts until all of them fit."""
    while True:
        occupancy = _Occupancy(spec.image_size, clearance=(spec.line_width + 1.0) * spec.scale)
        curves = []
        for _ in range(1 + spec.num_distractors):
            curve = _draw_curve(rng, spec, spec.contour_length, occupancy)
            if curve is None:
                break
            curves.append(curve)
        if len(curves) == 1 + spec.num_distractors:
            return curves, occupancy


def _matched_markers(curves: list[np.ndarray], rng: np.random.Generator, tolerance: float):
    """Marker pairs for both labels with (nearly) the same distance: `(positive, negative)`, or None.

    The positive pair is the two ends of one curve (the target, tried in a random order); the negative pair keeps
    one of those ends and takes the end of another curve whose distance to it is closest to the target's
    end-to-end distance. A scene is kept only when that difference is within `tolerance` pixels, whatever the
    label, so the marker distance gives the label away as little as `tolerance` allows.
    """
    ends = [(curve[0, 0], curve[-1, 1]) for curve in curves]
    for target in rng.permutation(len(curves)):
        first = int(rng.integers(2))
        marker_a, other = ends[target][first], ends[target][1 - first]
        wanted = np.linalg.norm(other - marker_a)
        candidates = [end for index, pair in enumerate(ends) if index != target for end in pair]
        gaps = [abs(np.linalg.norm(end - marker_a) - wanted) for end in candidates]
        best = int(np.argmin(gaps))
        if gaps[best] <= tolerance:
            return int(target), (marker_a, other), (marker_a, candidates[best])
    return None


def generate_scene(spec: PathfinderSpec, rng: np.random.Generator, label: int) -> PathfinderScene:
    """Draw the curves and loose paddles, then place the markers for `label` (1 connected, 0 disconnected).

    What is drawn does not depend on `label`; only the second marker does, and both marker pairs the scene offers
    are (nearly) equally far apart (see `_matched_markers`).
    """
    while True:
        curves, occupancy = _draw_curves(spec, rng)
        matched = _matched_markers(curves, rng, tolerance=MARKER_DISTANCE_TOLERANCE * spec.scale)
        if matched is not None:
            break
    target, positive, negative = matched
    curves = [curves[target]] + [curve for index, curve in enumerate(curves) if index != target]  # target first
    loose = [_draw_curve(rng, spec, 1, occupancy, tries=20) for _ in range(spec.num_loose_paddles)]
    loose = [paddle for paddle in loose if paddle is not None]
    markers = positive if label == 1 else negative
    return PathfinderScene(curves=curves, loose=loose, markers=markers, label=label)


def render_scene(scene: PathfinderScene, spec: PathfinderSpec) -> PILImage.Image:
    """The scene as a greyscale image (mode "L"): white strokes and markers on black, anti-aliased."""
    big = spec.image_size * SUPERSAMPLE
    canvas = PILImage.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(spec.line_width * spec.scale * SUPERSAMPLE))
    for paddles in [*scene.curves, *scene.loose]:
        for start, end in paddles:
            draw.line([tuple(start * SUPERSAMPLE), tuple(end * SUPERSAMPLE)], fill=255, width=width)
    radius = spec.marker_radius * spec.scale * SUPERSAMPLE
    for x, y in scene.markers:
        x, y = x * SUPERSAMPLE, y * SUPERSAMPLE
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return canvas.resize((spec.image_size, spec.image_size), PILImage.Resampling.BOX)


@dataclass
class PathfinderArguments:
    """The options of `scripts/make_pathfinder.py`: where to write, the spec and the split sizes."""

    output_dir: str = field(
        metadata={"help": "Folder to create (save_to_disk); --dataset_name of the fine-tuning script."}
    )
    image_size: int = field(default=32, metadata={"help": "Pixels per side (32, 64, 128: LRA's Path-X size)."})
    contour_length: int = field(default=6, metadata={"help": "Paddles per curve (LRA: 6, 9, 14 at 32 px)."})
    num_distractors: int = field(default=1, metadata={"help": "Curves besides the target one."})
    num_loose_paddles: int = field(default=4, metadata={"help": "Single paddles scattered as clutter."})
    num_train: int = field(default=20_000, metadata={"help": "Training images."})
    num_validation: int = field(default=2_000, metadata={"help": "Validation images."})
    num_test: int = field(default=2_000, metadata={"help": "Test images (scenes never in train or validation)."})
    seed: int = field(default=0, metadata={"help": "The data set is a function of this seed alone."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --output_dir."})

    def spec(self) -> PathfinderSpec:
        names = {f.name for f in fields(PathfinderSpec)}
        return PathfinderSpec(**{name: value for name, value in asdict(self).items() if name in names})


def _labels(count: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly balanced labels (one more 0 when `count` is odd), in a random order."""
    labels = np.arange(count) % 2
    return rng.permutation(labels)


def generate_split(spec: PathfinderSpec, count: int, seed: int, split: str) -> Dataset:
    """`count` images of one split, with columns `image`, `label` and `marker_distance` (pixels, for the cue)."""
    stream = SPLIT_STREAMS[split]
    labels = _labels(count, np.random.default_rng([seed, stream, 2**31]))
    images, distances = [], []
    for index, label in enumerate(tqdm(labels, desc=f"Pathfinder {split}", unit="image", leave=False)):
        scene = generate_scene(spec, np.random.default_rng([seed, stream, index]), int(label))
        images.append(render_scene(scene, spec))
        distances.append(float(np.linalg.norm(scene.markers[0] - scene.markers[1])))
    features = Features(
        {"image": Image(), "label": ClassLabel(names=list(LABEL_NAMES)), "marker_distance": Value("float32")}
    )
    return Dataset.from_dict(
        {"image": images, "label": labels.tolist(), "marker_distance": distances}, features=features
    )


def generate_pathfinder(
    spec: PathfinderSpec,
    num_train: int = 20_000,
    num_validation: int = 2_000,
    num_test: int = 2_000,
    seed: int = 0,
) -> DatasetDict:
    """A Pathfinder `DatasetDict` with `train`, `validation` and `test` splits, reproducible from `seed`.

    Columns: `image` (mode "L"), `label` (`ClassLabel` disconnected / connected), `marker_distance` (float, the
    distance between the markers in pixels; the fine-tuning script reads `image` and `label` only).
    The spec is kept in the data set's description, as JSON.
    """
    counts = {"train": num_train, "validation": num_validation, "test": num_test}
    splits = DatasetDict({split: generate_split(spec, count, seed, split) for split, count in counts.items() if count})
    for dataset in splits.values():
        dataset.info.description = f"Pathfinder {asdict(spec)} seed {seed}"
    return splits


def _best_threshold(distances: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    """The rule `label = 1 if sign * (distance - threshold) <= 0` with the best accuracy on these samples:
    (accuracy, threshold, sign). Sorting once makes every threshold's count a cumulative sum."""
    order = np.argsort(distances, kind="stable")
    d, y = distances[order], labels[order]
    last = np.r_[d[1:] != d[:-1], True]  # a threshold at each distinct value takes all samples up to it
    positives_below = np.cumsum(y)[last]
    count_below = np.arange(1, len(d) + 1)[last]
    negatives_above = (len(y) - y.sum()) - (count_below - positives_below)
    # sign 1: predict connected at or below the threshold; sign -1: above it (and at it, an edge case of ties)
    correct = {1: positives_below + negatives_above, -1: len(y) - (positives_below + negatives_above)}
    best = max((int(correct[sign].max()), sign) for sign in (1, -1))
    index = int(np.argmax(correct[best[1]]))
    return best[0] / len(y), float(d[last][index]), best[1]


def marker_distance_cue(splits: DatasetDict) -> dict[str, float]:
    """How much the distance between the markers alone gives away: the best threshold rule on `train` (either
    direction), and its accuracy on `train` and on `test` (0.5 means the cue says nothing)."""
    train = np.asarray(splits["train"]["marker_distance"], dtype=np.float64)
    labels = np.asarray(splits["train"]["label"])
    accuracy, threshold, sign = _best_threshold(train, labels)
    result = {
        "threshold": threshold,
        "direction": "connected when closer" if sign == 1 else "connected when farther",
        "train_accuracy": accuracy,
    }
    if "test" in splits:
        test = np.asarray(splits["test"]["marker_distance"], dtype=np.float64)
        predicted = (sign * (test - threshold) <= 0).astype(int)
        result["test_accuracy"] = float((predicted == np.asarray(splits["test"]["label"])).mean())
    return result


def sample_sheet(splits: DatasetDict, per_class: int = 4, scale: int = 4, split: str = "test") -> PILImage.Image:
    """A picture of the first `per_class` images of each class of `split`: one row per class (disconnected on top),
    each image enlarged `scale` times without smoothing, on a grey background."""
    dataset = splits[split]
    labels = np.asarray(dataset["label"])
    size = dataset[0]["image"].size[0] * scale
    pad = max(2, size // 16)
    sheet = PILImage.new("L", (per_class * (size + pad) + pad, len(LABEL_NAMES) * (size + pad) + pad), 96)
    for row, label in enumerate(range(len(LABEL_NAMES))):
        for column, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            image = dataset[int(index)]["image"].resize((size, size), PILImage.Resampling.NEAREST)
            sheet.paste(image, (pad + column * (size + pad), pad + row * (size + pad)))
    return sheet


def save_pathfinder(
    output_dir: str | os.PathLike,
    spec: PathfinderSpec,
    num_train: int = 20_000,
    num_validation: int = 2_000,
    num_test: int = 2_000,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, float]:
    """Generate a Pathfinder data set and write it to `output_dir` with `save_to_disk`, atomically, beside
    `pathfinder.json` (the spec, the seed, the sizes and the marker-distance cue) and `samples.png`.

    The fine-tuning script reads the folder with `--dataset_name <output_dir>`. Returns the cue.

    Raises:
        OutputExistsError: `output_dir` exists and `overwrite` is False (checked before any image is drawn).
    """
    with atomic_directory(output_dir, overwrite=overwrite) as staging:
        splits = generate_pathfinder(spec, num_train, num_validation, num_test, seed=seed)
        cue = marker_distance_cue(splits) if num_train else {}
        splits.save_to_disk(os.fspath(staging))
        description = {
            "spec": asdict(spec),
            "seed": seed,
            "splits": {k: len(v) for k, v in splits.items()},
            "marker_distance_cue": cue,
        }
        (Path(staging) / "pathfinder.json").write_text(json.dumps(description, indent=2) + "\n")
        if "test" in splits and len(splits["test"]) >= 2 * 4:
            sample_sheet(splits).save(Path(staging) / "samples.png")
    return cue


__all__ = [
    "LABEL_NAMES",
    "PathfinderArguments",
    "PathfinderScene",
    "PathfinderSpec",
    "generate_pathfinder",
    "generate_scene",
    "generate_split",
    "marker_distance_cue",
    "render_scene",
    "sample_sheet",
    "save_pathfinder",
]
