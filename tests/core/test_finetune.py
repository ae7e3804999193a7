"""Fine-tuning on the user's digits: reading samples, too few of them, the records, stop, forgetting."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from digitpad.core.finetune import (
    FineTuneConfig,
    FineTuner,
    FoldRecord,
    SampleSet,
    TooFewSamples,
    fine_tune,
    read_samples,
    shortfall,
)
from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.model_io import load_model, shipped_model_path
from digitpad.core.samples import SampleError
from digitpad.core.train import EpochRecord, StepRecord

DATA = Path(__file__).resolve().parents[1] / "data" / "handwriting"
FAST = FineTuneConfig(steps=12, batch_size=16, threads=1)


@dataclass(frozen=True)
class SmallMNIST:
    """Stands in for MNIST: the plain drawings, a few times over, as training and test digits."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


@pytest.fixture(scope="module")
def european() -> SampleSet:
    return read_samples(DATA / "european")


@pytest.fixture(scope="module")
def small_mnist() -> SmallMNIST:
    plain = read_samples(DATA / "plain")
    x, y = np.tile(plain.images, (20, 1, 1)), np.tile(plain.labels, 20)
    return SmallMNIST(x, y, plain.images, plain.labels)


@pytest.fixture
def small_model() -> MLP:
    return MLP(MLPConfig(hidden=(16,)), np.random.default_rng(0))


def subset(samples: SampleSet, mask) -> SampleSet:
    return SampleSet(samples.images[mask], samples.labels[mask])


def test_read_samples_gives_28x28_inputs_and_lists_bad_files(tmp_path):
    for digit in (2, 4):
        (tmp_path / str(digit)).mkdir()
        for name in ("anna-0.png", "dirk-0.png"):
            (tmp_path / str(digit) / name).write_bytes((DATA / "european" / str(digit) / name).read_bytes())
    (tmp_path / "4" / "notes.png").write_text("text")
    from digitpad.imageio import save_png

    save_png(tmp_path / "2" / "blank.png", np.full((50, 50), 255, np.uint8))
    samples = read_samples(tmp_path)
    assert samples.images.shape == (4, 28, 28) and samples.images.dtype == np.uint8
    assert list(samples.labels) == [2, 2, 4, 4]
    assert samples.images.max() > 200 and samples.images[:, 0, :].max() == 0  # white ink on black, centred
    assert len(samples.skipped) == 2
    assert any("blank.png" in line and "blank" in line for line in samples.skipped)
    assert any("notes.png" in line and "not a picture" in line for line in samples.skipped)


def test_read_samples_of_a_missing_folder_says_so(tmp_path):
    with pytest.raises(SampleError, match="no such folder"):
        read_samples(tmp_path / "nothing")


def test_shortfall_counts_only_digits_that_have_samples():
    assert shortfall([3, 7, 7, 7]) == {3: 1}
    assert shortfall([3, 3, 7, 7]) == {}
    assert shortfall([1, 5], min_per_digit=3) == {1: 2, 5: 2}


def test_too_few_samples_says_how_many_more_would_help(european, small_mnist, small_model):
    one_three = subset(european, (european.labels == 7) | (np.arange(len(european)) == 9))  # all 7s, one 3
    assert list(np.bincount(one_three.labels, minlength=10)[[3, 7]]) == [1, 3]
    with pytest.raises(TooFewSamples, match="add 1 more 3 ") as info:
        FineTuner(small_model, one_three, small_mnist, FAST)
    assert "\n" not in str(info.value)


def test_no_samples_is_an_error(small_mnist, small_model):
    empty = SampleSet(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(SampleError, match="no samples"):
        FineTuner(small_model, empty, small_mnist, FAST)


def test_records_then_folds_then_a_result(european, small_mnist, small_model):
    before = [w.copy() for w in small_model.weights]
    tuner = FineTuner(small_model, european, small_mnist, FAST)
    assert tuner.folds == 3  # three of each digit: three folds
    records = list(tuner)
    steps = [r for r in records if isinstance(r, StepRecord)]
    folds = [r for r in records if isinstance(r, FoldRecord)]
    assert [r.step for r in steps] == list(range(1, FAST.steps + 1))
    assert isinstance(records[FAST.steps], EpochRecord)
    assert [f.fold for f in folds] == [1, 2, 3] and records[-3:] == folds
    assert sum(f.n for f in folds) == len(european)  # every sample held out exactly once
    result = tuner.result
    assert result.samples == len(european) and result.folds == 3 and not result.stopped
    assert result.samples_accuracy_after == pytest.approx(sum(f.correct for f in folds) / len(european))
    for key, value in result.to_dict().items():
        if key.endswith(("_before", "_after")):
            assert 0.0 <= value <= 1.0, key
    assert all(np.array_equal(a, b) for a, b in zip(before, small_model.weights))  # the start is left alone
    assert not all(np.array_equal(a, b) for a, b in zip(before, result.model.weights))


def test_samples_of_only_some_digits_are_fine(european, small_mnist, small_model):
    some = subset(european, np.isin(european.labels, [1, 7]))
    result = fine_tune(small_model, some, small_mnist, FAST)
    assert result.samples == 6 and np.isfinite(result.samples_accuracy_after)


def test_fine_tuning_teaches_the_samples(european, small_mnist):
    """A small model trained on plain digits reads the taught European ones better afterwards."""
    from digitpad.core.train import TrainConfig, train

    base = train(TrainConfig(hidden=(32,), epochs=3, batch_size=32, val_size=0, threads=1), small_mnist).model
    config = FineTuneConfig(steps=60, batch_size=32, lr=1e-3, folds=0, threads=1)
    result = fine_tune(base, european, small_mnist, config)
    after = float((result.model.predict(european.images) == european.labels).mean())
    assert after > result.samples_accuracy_before
    assert np.isnan(result.samples_accuracy_after) and result.folds == 0  # no held-out figure asked for


def test_stop_ends_the_run_without_a_held_out_figure(european, small_mnist, small_model):
    tuner = FineTuner(small_model, european, small_mnist, FAST)
    for record in tuner:
        if isinstance(record, StepRecord) and record.step == 3:
            tuner.stop()
    result = tuner.result
    assert result.stopped and result.train.steps <= 4
    assert np.isnan(result.samples_accuracy_after) and "stopped" in result.message


@pytest.mark.mnist
@pytest.mark.skipif(not shipped_model_path().is_file(), reason="no shipped model in this checkout")
def test_fine_tuning_the_shipped_model_forgets_no_mnist(mnist, european):
    """The forgetting guard: after learning 30 European drawings, the MNIST test set is read as well as before."""
    model, _ = load_model(shipped_model_path())
    result = fine_tune(model, european, mnist, FineTuneConfig(folds=0, threads=1))
    assert result.mnist_accuracy_before > 0.99
    assert result.mnist_accuracy_after >= result.mnist_accuracy_before - 0.002  # at most 0.2 point (target 0.1)
    taught_after = float((result.model.predict(european.images) == european.labels).mean())
    assert taught_after >= result.samples_accuracy_before
