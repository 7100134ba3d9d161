"""Tune how a digits MLP is trained: optimizer, its own hyperparameters, schedule, batch size
and activation, with KerasTuner and tfoptim.tuning.

Run it as it is (about a minute on 2 cores): ``python examples/tune_digits.py``. Run it again
and it continues the search in ``tune_digits/`` instead of starting over.
"""

import json

import keras
import keras_tuner as kt
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import tfoptim.tuning

x, y = load_digits(return_X_y=True)
x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)


# 1. Inside your own build(hp): one line picks the optimizer and its hyperparameters.
def build(hp):
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Choice("units", [32, 64, 128]), activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(
        optimizer=tfoptim.tuning.sample_optimizer(hp, optimizers=("momentum", "adam", "radam")),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


bayesian = kt.BayesianOptimization(build, objective="val_accuracy", max_trials=3, seed=0,
                                   directory="tune_digits", project_name="own_build")
bayesian.search(x_train, y_train, validation_data=(x_val, y_val), epochs=5, verbose=0)
print("own build(hp):", tfoptim.tuning.best_optimizer(bayesian).get_config()["name"])


# 2. Or let OptimizerHyperModel compile and fit: it also tunes the batch size, the activation
#    (build_model takes it) and a schedule laid out over each trial's own number of steps.
def build_model(hp, activation):
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(hp.Choice("units", [32, 64, 128]), activation=activation),
        keras.layers.Dense(10),
    ])


hypermodel = tfoptim.tuning.OptimizerHyperModel(
    build_model,
    optimizers=("sgd", "momentum", "rmsprop", "adam", "adamw"),
    schedules=("constant", "cosine", "one_cycle"),
    warmup=(0.0, 0.1),
    batch_sizes=(32, 64, 128),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=8, seed=0,
                        directory="tune_digits", project_name="mlp")
tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=10, verbose=0)

# 3. The result: a table, a plot, and the best optimizer, fresh or as JSON.
result = tfoptim.tuning.report(tuner, path="tune_digits")
optimizer = tfoptim.tuning.best_optimizer(tuner)
print(type(optimizer).__name__, optimizer.get_config()["learning_rate"])
with open("tune_digits/best_optimizer.json") as f:
    same = keras.optimizers.deserialize(json.load(f))
