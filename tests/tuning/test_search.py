"""Searches with every KerasTuner tuner on the digits MLP: small, seeded, a few seconds each."""

import json
import math

import keras
import keras_tuner as kt
import numpy as np
import pytest

import tfoptim.cli
import tfoptim.optimizers
from tfoptim.tuning import OptimizerHyperModel, best_optimizer, report, sample_optimizer
from tfoptim.tuning.cli import digits_split

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def digits():
    x_train, x_val, y_train, y_val = digits_split(0)
    return x_train, y_train, x_val, y_val


def mlp(hp, activation="relu"):
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation=activation), keras.layers.Dense(10)]
    )


def completed(tuner):
    return [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED"]


@pytest.mark.slow
def test_random_search_reaches_95_percent(digits, tmp_path):
    x, y, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    # A budget of 5 epochs: the upper half of each family's learning-rate range.
    hypermodel = OptimizerHyperModel(mlp, optimizers=("momentum", "rmsprop", "adam"),
                                     learning_rate=(3e-3, 3e-2), batch_sizes=(32, 64),
                                     loss=LOSS, metrics=["accuracy"])
    tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=3, seed=1,
                            directory=tmp_path, project_name="random")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=5, verbose=0)
    assert len(completed(tuner)) == 3
    assert tuner.oracle.get_best_trials(1)[0].score >= 0.95


@pytest.mark.slow
def test_hyperband_with_the_batch_size_tuning_fit(digits, tmp_path):
    x, y, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.params["steps"])

    hypermodel = OptimizerHyperModel(
        mlp, optimizers=("adam", "momentum"), batch_sizes=(64, 256), epochs=[5, 7],
        activation=("relu", "tanh"), schedules=("constant", "one_cycle"), loss=LOSS,
        metrics=["accuracy"],
    )
    tuner = kt.Hyperband(hypermodel, objective="val_accuracy", max_epochs=2, factor=2, seed=0,
                         directory=tmp_path, project_name="hyperband")
    # Hyperband passes epochs and initial_epoch to fit; search's epochs is overridden by it.
    tuner.search(x[:400], y[:400], validation_data=(x_val, y_val), epochs=50, verbose=0,
                 callbacks=[Record()])
    trials = completed(tuner)
    assert len(trials) >= 3 and len(trials) == len(tuner.oracle.trials)
    for trial in trials:
        values = trial.hyperparameters.values
        assert "epochs" not in values  # Hyperband owns the epochs
        assert values["batch_size"] in (64, 256) and values["activation"] in ("relu", "tanh")
    assert set(seen) <= {math.ceil(400 / 64), math.ceil(400 / 256)}
    assert any(t.hyperparameters.values.get("tuner/initial_epoch", 0) > 0 for t in trials)


def test_bayesian_search_report_and_best_optimizer(digits, tmp_path, capsys):
    x, y, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    hypermodel = OptimizerHyperModel(
        mlp, optimizers=("adamw", "rmsprop"), batch_sizes=(128,), epochs=2,
        schedules=("cosine", "warmup_stable_decay"), warmup=(0.0, 0.2), loss=LOSS,
        metrics=["accuracy"],
    )
    tuner = kt.BayesianOptimization(hypermodel, objective="val_loss", max_trials=2, seed=0,
                                    directory=tmp_path, project_name="bayesian")
    tuner.search(x[:512], y[:512], validation_data=(x_val, y_val), verbose=0)
    assert len(completed(tuner)) == 2
    best = tuner.get_best_hyperparameters(1)[0].values

    optimizer = best_optimizer(tuner)
    assert type(optimizer).__name__.lower() == best["optimizer"]
    # The schedule spans the best trial's run: 512 examples / 128 x 2 epochs.
    rate = optimizer._learning_rate
    steps = 8
    assert float(rate(steps)) == pytest.approx(
        float(keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))._learning_rate(steps))
    )
    assert hypermodel.total_steps(best) == steps

    result = report(tuner, path=tmp_path / "report")
    out = capsys.readouterr().out
    assert "val_loss" in out and best["optimizer"] in out
    assert [r.objective for r in result.rows] == sorted(r.objective for r in result.rows)
    with open(result.files["best"]) as f:
        restored = keras.optimizers.deserialize(json.load(f))
    # `best_optimizer` builds a new optimizer, named by Keras's counter: all but the name agree.
    assert {**restored.get_config(), "name": None} == {**optimizer.get_config(), "name": None}
    assert (tmp_path / "report" / "trials.png").stat().st_size > 10_000
    with open(result.files["trials"]) as f:
        assert len(json.load(f)["trials"]) == 2


@pytest.mark.slow
def test_grid_over_a_small_named_space(digits, tmp_path):
    x, y, x_val, y_val = digits

    def build(hp):
        model = mlp(hp)
        optimizer = sample_optimizer(hp, optimizers=["adam", "sgd"], learning_rate=[1e-3, 1e-1],
                                     tune_arguments=False)
        model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"])
        return model

    tuner = kt.GridSearch(build, objective="val_accuracy", max_trials=10,
                          directory=tmp_path, project_name="grid")
    tuner.search(x[:128], y[:128], validation_data=(x_val, y_val), epochs=1, verbose=0)
    grid = sorted(
        (t.hyperparameters.values["optimizer"],
         t.hyperparameters.values[f"{t.hyperparameters.values['optimizer']}/learning_rate"])
        for t in completed(tuner)
    )
    assert grid == [("adam", 1e-3), ("adam", 1e-1), ("sgd", 1e-3), ("sgd", 1e-1)]


def test_hypermodel_bad_input():
    with pytest.raises(ValueError, match="Unknown optimizer"):
        OptimizerHyperModel(mlp, optimizers=("adam", "adamm"), loss=LOSS)
    with pytest.raises(ValueError, match="batch_sizes"):
        OptimizerHyperModel(mlp, batch_sizes=(), loss=LOSS)
    with pytest.raises(ValueError, match="epochs"):
        OptimizerHyperModel(mlp, epochs=[0, 2], loss=LOSS)
    with pytest.raises(ValueError, match="activation"):
        OptimizerHyperModel(lambda hp: mlp(hp), activation=("relu",), loss=LOSS)
    hypermodel = OptimizerHyperModel(lambda hp: mlp(hp), batch_sizes=(8,))
    hp = kt.HyperParameters()
    with pytest.raises(ValueError, match="needs a loss"):
        hypermodel.build(hp)
    model = OptimizerHyperModel(lambda hp: mlp(hp), loss=LOSS).build(hp)
    with pytest.raises(ValueError, match="batch_size"):
        OptimizerHyperModel(lambda hp: mlp(hp), loss=LOSS).fit(hp, model, np.zeros((4, 64)),
                                                             np.zeros(4), batch_size=2)


@pytest.mark.slow
def test_tune_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tfoptim.cli, "COMMANDS", {"tune": tfoptim.cli.COMMANDS["tune"]})
    argv = ["tune", "--trials", "2", "--epochs", "1", "--output", str(tmp_path)]
    assert tfoptim.cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "trial     1/2" in out and "trial     2/2" in out and "Best:" in out
    assert (tmp_path / "best_optimizer.json").exists() and (tmp_path / "trials.png").exists()
    # Running it again continues the search: nothing left to do, no trial repeated.
    assert tfoptim.cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 trials already done" in out and "trial     1/2" not in out
