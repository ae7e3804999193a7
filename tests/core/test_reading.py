"""The one read path: picture -> preprocess -> trace -> Reading, with what it keeps for explaining the answer."""

import numpy as np
import pytest

from digitpad.core import preprocess as pre_mod
from digitpad.core.evaluate import map_to_input, saliency, top_units
from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.preprocess import preprocess
from digitpad.core.reading import blank_reading, read_image, read_input


def _bitmap():
    """A thick diagonal bar on a 280x280 black canvas (white ink, uint8)."""
    image = np.zeros((280, 280), np.uint8)
    for t in np.linspace(0, 1, 400):
        r, c = int(40 + 200 * t), int(90 + 100 * t)
        image[r - 9:r + 9, c - 9:c + 9] = 255
    return image


@pytest.fixture
def model():
    return MLP(MLPConfig(hidden=(32, 16)), rng=2)


def test_a_picture_is_read_once_and_the_reading_keeps_the_record_and_the_trace(model, monkeypatch):
    bitmap = _bitmap()
    calls = []
    monkeypatch.setattr(pre_mod, "preprocess", lambda image: calls.append(1) or preprocess(image))
    r = read_image(model, bitmap, temperature=1.5)
    assert len(calls) == 1
    expected = preprocess(bitmap)
    np.testing.assert_allclose(r.image28, expected.image)
    assert r.preprocessed.bbox == expected.bbox and r.preprocessed.scale == pytest.approx(expected.scale)
    t = model.trace(expected.image.reshape(1, 784), 1.5)
    np.testing.assert_allclose(r.trace.logits, t.logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.probabilities, t.probabilities[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.activations[1], t.activations[1][0], rtol=1e-4, atol=1e-6)
    assert r.digit == int(t.probabilities.argmax()) and r.confidence == pytest.approx(float(r.probabilities.max()))
    assert r.temperature == 1.5 and not r.blank


def test_the_why_answer_needs_no_forward_pass_beyond_the_reading(model, monkeypatch):
    r = read_image(model, _bitmap())
    expected_sal = saliency(model, r.image28, r.digit)
    expected_units = top_units(model, r.image28, 4)
    monkeypatch.setattr(model, "trace", lambda *a, **k: pytest.fail("a second forward pass"))
    np.testing.assert_allclose(saliency(model, r.image28, r.digit, r.trace), expected_sal, rtol=1e-5, atol=1e-8)
    units, images = top_units(model, r.image28, 4, r.trace)
    np.testing.assert_array_equal(units, expected_units[0])
    np.testing.assert_array_equal(images, expected_units[1])
    overlay = map_to_input(expected_sal, r.preprocessed, 64)
    assert overlay.shape == (64, 64) and np.abs(overlay).max() > 0


def test_a_28x28_input_carries_an_identity_record(model):
    x = np.random.default_rng(1).random((28, 28), dtype=np.float32)
    r = read_input(model, x, label="test digit #1")
    assert r.preprocessed.input_shape == (28, 28) and r.preprocessed.bbox == (0, 28, 0, 28)
    assert r.preprocessed.scale == 1.0 and r.label == "test digit #1"
    # an identity record maps the 28x28 saliency onto itself
    sal = saliency(model, x, r.digit, r.trace)
    np.testing.assert_allclose(map_to_input(sal, r.preprocessed, 28), sal, rtol=1e-5, atol=1e-7)


def test_blank_and_no_model_read_as_nothing(model):
    r = read_image(model, np.zeros((280, 280), np.uint8))
    assert r.blank and r.digit is None and r.trace is None and r.preprocessed.blank
    assert [a.shape for a in r.activations] == [(32,), (16,)]
    nothing = read_image(None, _bitmap())
    assert nothing.blank and nothing.digit is None and nothing.preprocessed is not None
    assert blank_reading(None).activations == ()
