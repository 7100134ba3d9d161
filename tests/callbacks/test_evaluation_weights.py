"""``EvaluationWeights`` and the evaluation-weights protocol: every optimizer that keeps
evaluation weights (ScheduleFreeSGD, Keras's ScheduleFreeAdamW, SWA, Lookahead, Keras's EMA)
through one mechanism."""

import keras
import numpy as np
import pytest

import tfoptim.optimizers as to
from tfoptim.callbacks import (
    EvaluationWeights,
    evaluation_values,
    evaluation_weights,
    update_batch_norm,
)

OPTIMIZERS = {
    "ScheduleFreeSGD": lambda: to.ScheduleFreeSGD(0.1),
    "keras.ScheduleFreeAdamW": lambda: keras.optimizers.ScheduleFreeAdamW(0.01),
    "SWA": lambda: to.SWA(keras.optimizers.SGD(0.1, momentum=0.9), average_period=2),
    "Lookahead": lambda: to.Lookahead(keras.optimizers.Adam(0.01), sync_period=5),
    "keras.Adam(use_ema)": lambda: keras.optimizers.Adam(0.01, use_ema=True, ema_momentum=0.9),
}


def fit(digits_model, digits, make_optimizer, callbacks=(), epochs=2, strategy=None):
    x_train, y_train, x_val, y_val = digits
    model = digits_model(make_optimizer, strategy=strategy)
    history = model.fit(x_train[:256], y_train[:256], validation_data=(x_val, y_val), epochs=epochs,
                        batch_size=64, shuffle=False, verbose=0, callbacks=list(callbacks))
    return model, history.history


def weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_validation_uses_evaluation_weights_and_training_is_unchanged(
    name, digits_model, digits, state_of, assert_same_state
):
    x_val, y_val = digits[2:]
    make = OPTIMIZERS[name]
    plain, plain_history = fit(digits_model, digits, make)
    model, history = fit(digits_model, digits, make, [EvaluationWeights(final=False)])
    # Training went on from the training weights, bit for bit, optimizer state included.
    assert_same_state(state_of(model), state_of(plain))
    assert history["loss"] == plain_history["loss"]
    with evaluation_weights(model) as swapped:
        assert swapped
        expected = model.evaluate(x_val, y_val, verbose=0, return_dict=True)
    assert history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-6)
    assert history["val_loss"][-1] != pytest.approx(plain_history["val_loss"][-1], rel=1e-6)


def test_final_leaves_the_evaluation_weights(digits_model, digits):
    model, _ = fit(digits_model, digits, OPTIMIZERS["ScheduleFreeSGD"], [EvaluationWeights(final=False)])
    x = [np.asarray(v) for v in evaluation_values(model.optimizer, model.trainable_variables)]
    model, _ = fit(digits_model, digits, OPTIMIZERS["ScheduleFreeSGD"], [EvaluationWeights()])
    for a, b in zip(weights(model), x):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("first", [True, False], ids=["before", "after"])
def test_checkpoints_hold_the_evaluation_weights(first, digits_model, digits, tmp_path):
    """Wherever ModelCheckpoint sits in the list, the file gets the x weights and training
    resumes from y."""
    path = tmp_path / "epoch{epoch}.weights.h5"
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True)
    callbacks = [EvaluationWeights(final=False), checkpoint]
    model, _ = fit(digits_model, digits, OPTIMIZERS["ScheduleFreeSGD"],
                   callbacks[::-1] if first else callbacks, epochs=1)
    x = [np.asarray(v) for v in evaluation_values(model.optimizer, model.trainable_variables)]
    trained = weights(model)
    saved = digits_model(OPTIMIZERS["ScheduleFreeSGD"])
    saved.load_weights(tmp_path / "epoch1.weights.h5")
    for a, b, y in zip(weights(saved), x, trained):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, y)
    assert "save_weights" not in vars(model) and "save" not in vars(model)


def test_keras_schedule_free_adamw_x_is_the_x_its_step_produced():
    """Keras's ScheduleFreeAdamW stores y (the variable) and z; its step forms
    ``x_new = lerp(x_old, z, 1/t)`` and ``y = lerp(z, x_new, beta_1)``, so the evaluation
    weights ``(y - (1 - beta_1) z) / beta_1`` are its ``x_new``. Replayed here in NumPy as
    Keras 3.15 computes it: its ``x_old`` is recovered with the already-updated z (its
    ``momentum_old = momentum.value`` aliases the variable on TensorFlow), so its x is not
    exactly the running mean of z that the paper's x is."""
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    target = np.array([1.0, -2.0, 0.5])
    variable = keras.Variable(np.zeros(3), dtype="float64")
    optimizer = keras.optimizers.ScheduleFreeAdamW(lr, beta_1=b1, beta_2=b2, epsilon=eps)
    y, z, v = np.zeros(3), np.zeros(3), np.zeros(3)
    for t in range(1, 8):
        optimizer.apply([2.0 * (variable.numpy() - target)], [variable])
        g = 2.0 * (y - target)
        v = b2 * v + (1 - b2) * g * g
        z = z - lr * g / (np.sqrt(v / (1 - b2**t)) + eps)
        x = (1 - 1 / t) * (y - (1 - b1) * z) / b1 + z / t
        y = (1 - b1) * z + b1 * x
    np.testing.assert_allclose(variable.numpy(), y, rtol=1e-6)
    (ours,) = evaluation_values(optimizer, [variable])
    np.testing.assert_allclose(np.asarray(ours), x, rtol=1e-6)


def test_ema_evaluation_weights_are_the_moving_averages():
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer = keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5)
    for _ in range(3):
        optimizer.apply([variable.value], [variable])
    (ours,) = evaluation_values(optimizer, [variable])
    np.testing.assert_array_equal(np.asarray(ours), optimizer._model_variables_moving_average[0].numpy())


def test_without_evaluation_weights_nothing_happens(digits_model, digits, state_of, assert_same_state):
    plain, plain_history = fit(digits_model, digits, lambda: keras.optimizers.Adam(0.01))
    model, history = fit(digits_model, digits, lambda: keras.optimizers.Adam(0.01), [EvaluationWeights()])
    assert_same_state(state_of(model), state_of(plain))
    assert history == plain_history


@pytest.mark.slow
def test_under_loss_scaling_and_two_replicas(digits_model, digits, two_cpu_strategy):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model, history = fit(digits_model, digits, OPTIMIZERS["ScheduleFreeSGD"],
                             [EvaluationWeights(final=False)], strategy=two_cpu_strategy)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        with evaluation_weights(model) as swapped:
            assert swapped
            expected = model.evaluate(*digits[2:], verbose=0, return_dict=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-5)


def test_update_batch_norm_recomputes_the_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(128, 4)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(momentum=0.9),
                              keras.layers.Dense(1)])
    batch_norm = model.layers[0]
    batch_norm.moving_mean.assign(np.full(4, 100.0, "float32"))
    assert update_batch_norm(model, x, batch_size=32) == 4
    batches = x.reshape(4, 32, 4)
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), batches.mean(axis=1).mean(axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(batch_norm.moving_variance.numpy(),
                               batches.var(axis=1).mean(axis=0), rtol=1e-5)
    assert batch_norm.momentum == 0.9
    # A dataset of (inputs, targets) batches gives the same statistics.
    import tensorflow as tf

    mean = batch_norm.moving_mean.numpy()
    dataset = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(32)
    assert update_batch_norm(model, dataset) == 4
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), mean, rtol=1e-6)


def test_swa_then_batch_norm_in_fit(digits):
    """The SWA recipe: average in fit, leave the average in the model, recompute BN."""
    x_train, y_train, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.Dense(10)])
    model.compile(to.SWA(keras.optimizers.SGD(0.05, momentum=0.9), start_averaging=20,
                         average_period=5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0, callbacks=[EvaluationWeights()])
    update_batch_norm(model, x_train)
    assert model.evaluate(x_val, y_val, verbose=0, return_dict=True)["accuracy"] > 0.85


@pytest.mark.parametrize("kwargs, name", [(dict(checkpoints=1), "checkpoints"),
                                          (dict(final="yes"), "final")])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        EvaluationWeights(**kwargs)


def test_config_round_trip():
    callback = EvaluationWeights(checkpoints=False, final=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert restored.get_config() == callback.get_config()
