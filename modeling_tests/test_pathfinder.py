"""The Pathfinder generator: reproducible, balanced, labels that follow the scene, and a folder the script reads."""

import numpy as np
import pytest

from experiments.pathfinder.generator import (
    PathfinderSpec,
    generate_pathfinder,
    generate_scene,
    marker_distance_cue,
    save_pathfinder,
)
from transformers_mano.image_classification.data import load_image_classification_splits
from transformers_mano.utils.io import OutputExistsError


SPEC = PathfinderSpec(image_size=32)


def test_same_seed_same_images_and_balanced_labels():
    first = generate_pathfinder(SPEC, num_train=10, num_validation=0, num_test=4, seed=3)
    again = generate_pathfinder(SPEC, num_train=10, num_validation=0, num_test=4, seed=3)
    other = generate_pathfinder(SPEC, num_train=10, num_validation=0, num_test=4, seed=4)
    pixels = lambda splits: np.stack([np.asarray(image) for image in splits["train"]["image"]])  # noqa: E731
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))
    assert sum(first["train"]["label"]) == 5 and sum(first["test"]["label"]) == 2
    assert first["train"].features["label"].names == ["disconnected", "connected"]


@pytest.mark.parametrize("index", range(5))
def test_only_the_second_marker_depends_on_the_label(index):
    connected = generate_scene(SPEC, np.random.default_rng([0, 0, index]), 1)
    disconnected = generate_scene(SPEC, np.random.default_rng([0, 0, index]), 0)
    for a, b in zip(connected.curves, disconnected.curves):
        assert np.array_equal(a, b)
    target = connected.curves[0]
    ends = {tuple(target[0, 0]), tuple(target[-1, 1])}
    assert {tuple(m) for m in connected.markers} == ends  # both markers on the target's two ends
    assert np.array_equal(connected.markers[0], disconnected.markers[0])
    assert tuple(disconnected.markers[1]) not in ends  # the other marker on another curve's end
    distractor_ends = {tuple(end) for curve in disconnected.curves[1:] for end in (curve[0, 0], curve[-1, 1])}
    assert tuple(disconnected.markers[1]) in distractor_ends


def test_marker_distance_cue_finds_a_planted_threshold():
    from datasets import Dataset, DatasetDict

    split = Dataset.from_dict({"marker_distance": [1.0, 2.0, 3.0, 4.0], "label": [1, 1, 0, 0]})
    cue = marker_distance_cue(DatasetDict(train=split, test=split))
    assert cue["train_accuracy"] == 1.0 and cue["test_accuracy"] == 1.0 and cue["threshold"] == 2.0


def test_saved_folder_loads_with_dataset_name(tmp_path):
    folder = tmp_path / "pathfinder"
    save_pathfinder(folder, SPEC, num_train=8, num_validation=4, num_test=8, seed=0)
    assert (folder / "pathfinder.json").is_file() and (folder / "samples.png").is_file()
    splits = load_image_classification_splits(dataset_name=str(folder))
    assert {name: len(split) for name, split in splits.items()} == {"train": 8, "validation": 4, "test": 8}
    assert splits["test"].features["label"].names == ["disconnected", "connected"]
    with pytest.raises(OutputExistsError):
        save_pathfinder(folder, SPEC, num_train=2, num_validation=0, num_test=0)
