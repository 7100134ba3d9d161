"""NorMuon against the authors' ``SingleDeviceNorMuonWithAuxAdam`` (zichongli5/NorMuon,
``normuon.py``, commit e5aaaf4), restated in torch with its iteration in float64 and recorded
once by ``tests/fixtures/record_muon.py`` (torch 2.13.0, CPU, float64; configs ``normuon*`` of
``muon_trajectories.json``), and against the paper's normalisation written in NumPy here.

200 steps of the reference problem on a bias, a 24x32 kernel, a 3x3x2x4 convolution kernel and
a 4x5 kernel in Keras's layout; the reference stepped the transposed ``(out, in)`` views, so a
per-row statistic there is a per-column (per output neuron) one here.
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfoptim.optimizers as to
from trajectory import assert_close, floatx, run

FIXTURES = Path(__file__).parents[1] / "fixtures"
MANIFEST = json.loads((FIXTURES / "muon_trajectories.json").read_text())
ARRAYS = np.load(FIXTURES / "muon_trajectories.npz")
STEPS = MANIFEST["checkpoint_steps"]
SHAPES = tuple(tuple(s) for s in MANIFEST["shapes"])

CONFIGS = {
    # The authors' defaults; the 4x5 kernel, last, is the head: the auxiliary Adam.
    "normuon": dict(),
    "normuon_decay": dict(
        learning_rate=0.01, momentum=0.9, beta_2=0.99, weight_decay=0.1, adam_lr_ratio=1.0,
        adam_beta_2=0.999, epsilon=1e-8, exclude_output_head=False,
    ),
}
# The same operations in another order: measured 1.2e-15 at most.
RTOL = 1e-12


@pytest.mark.parametrize("config_id", sorted(CONFIGS))
def test_matches_reference_trajectory(config_id):
    with floatx("float64"):
        ours = run(to.NorMuon(exact_hyperparameters=True, **CONFIGS[config_id]), STEPS, shapes=SHAPES)
    for step in STEPS:
        expected = [ARRAYS[f"{config_id}/step{step}/param{i}"] for i in range(len(SHAPES))]
        assert_close(ours[step], expected, RTOL)


def normalised(update, v, beta_2):
    """The paper's per-neuron normalisation of an orthogonalised ``(fan_in, fan_out)`` update,
    in NumPy: ``v`` and the scaled update."""
    v = beta_2 * v + (1 - beta_2) * np.mean(update**2, axis=0)
    scaled = update / (np.sqrt(v) + 1e-10)
    return v, scaled * np.linalg.norm(update) / (np.linalg.norm(scaled) + 1e-10)


def test_normalisation_follows_the_paper():
    """Three steps of a kernel with uneven columns: each is Muon's orthogonalised update
    normalised per column by the running second moment (NumPy), with Muon's step size.
    From ``beta_2 = 0`` on the first step every column has the same norm."""
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(6, 4)) * np.array([0.01, 1.0, 10.0, 0.1]) for _ in range(3)]
    kwargs = dict(learning_rate=0.1, momentum=0.5, weight_decay=0.0, exclude_output_head=False,
                  exact_hyperparameters=True)
    with floatx("float64"):
        muon, normuon = to.Muon(**kwargs, convention="keller"), to.NorMuon(**kwargs, beta_2=0.75)
        a, b = keras.Variable(np.zeros((6, 4))), keras.Variable(np.zeros((6, 4)))
        v = np.zeros(4)
        for g in grads:
            before_a, before_b = a.numpy(), b.numpy()
            muon.apply([tf.constant(g)], [a])
            normuon.apply([tf.constant(g)], [b])
            orthogonal = (before_a - a.numpy()) / 0.1
            v, expected = normalised(orthogonal, v, 0.75)
            np.testing.assert_allclose((before_b - b.numpy()) / 0.1, expected, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(normuon._second_moments[0].numpy(), v, rtol=1e-12)
    first = to.NorMuon(1.0, beta_2=0.0, exclude_output_head=False)
    c = keras.Variable(np.zeros((6, 4), "float32"))
    first.apply([tf.constant(grads[0], "float32")], [c])
    np.testing.assert_allclose(np.linalg.norm(c.numpy(), axis=0), np.linalg.norm(c.numpy()) / 2, rtol=1e-5)


def test_state_is_one_value_per_output_neuron():
    shapes = {"conv": (3, 3, 2, 4), "bias": (7,), "dense": (5, 6), "head": (6, 2)}
    variables = [keras.Variable(np.ones(shape), name=name) for name, shape in shapes.items()]
    optimizer = to.NorMuon()
    optimizer.build(variables)
    shapes = {v.path.split("/", 1)[1]: tuple(v.shape) for v in optimizer.variables if "second_moment" in v.path}
    assert shapes == {"conv_second_moment": (4,), "dense_second_moment": (6,)}
    assert [v.path for v in optimizer.adamw_variables] == ["bias", "head"]


def test_defaults_are_the_references():
    config = to.NorMuon().get_config()
    reference = dict(
        learning_rate=0.02, momentum=0.95, beta_2=0.95, weight_decay=0.0, nesterov=True,
        ns_coefficients="original", ns_steps=5, adjust_lr_fn="original", convention="keller",
        adam_lr_ratio=3e-4 / 0.02, adam_beta_1=0.9, adam_beta_2=0.95, epsilon=1e-10,
        adam_bias_corrected_epsilon=True,
    )
    for name, value in reference.items():
        assert config[name] == (pytest.approx(value) if isinstance(value, float) else value), name


@pytest.mark.parametrize("beta_2", [1.0, -0.1, None])
def test_invalid_beta_2_raises_at_construction(beta_2):
    with pytest.raises(ValueError, match="`beta_2`"):
        to.NorMuon(beta_2=beta_2)
