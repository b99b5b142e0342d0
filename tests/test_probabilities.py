"""The one logits -> probabilities definition (ferlab.probabilities) used by inference,
evaluation and calibration: hand-computed values and agreement between its users."""
from __future__ import annotations

import numpy as np
import pytest

from ferlab.probabilities import softmax, temper


def test_softmax_by_hand_with_temperature_and_flip_views() -> None:
    z = np.array([[2.0, 1.0, 0.0]])
    e = np.exp([1.0, 0.5, 0.0])
    np.testing.assert_allclose(softmax(z, 2.0), [e / e.sum()])
    views = np.stack([z, z[:, ::-1]])  # the mirrored face read the other way round
    np.testing.assert_allclose(softmax(views), 0.5 * (softmax(z) + softmax(z[:, ::-1])))
    big = np.array([[1000.0, 0.0]])  # no overflow
    np.testing.assert_allclose(softmax(big), [[1.0, 0.0]])
    assert softmax(z).dtype == np.float64


@pytest.mark.parametrize("t", [0.5, 1.0, 1.7])
def test_temper_of_probabilities_is_softmax_of_the_scaled_logits(t: float) -> None:
    z = np.random.default_rng(0).normal(size=(5, 7)) * 3
    np.testing.assert_allclose(temper(softmax(z), t), softmax(z, t), rtol=1e-10)


def test_evaluation_and_inference_use_it() -> None:
    torch = pytest.importorskip("torch")
    from ferlab.research.evaluation.predict import probs_from_logits
    from ferlab.research.evaluation.uncertainty import calibrated_probs

    z = np.random.default_rng(1).normal(size=(2, 4, 7)).astype(np.float32)
    np.testing.assert_allclose(probs_from_logits(torch.from_numpy(z)).numpy(), softmax(z))
    assert calibrated_probs is softmax
