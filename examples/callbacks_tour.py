"""Every tfoptim callback on one small model: scikit-learn's digits, an MLP, Adam.

Run: ``python examples/callbacks_tour.py``. The README's "Training callbacks" section is this
file, cut into pieces.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import tfoptim  # noqa: E402
from tfoptim.callbacks import (  # noqa: E402
    ConvergenceStopping,
    NonFiniteRecovery,
    OptimizerMonitor,
    ProgressBar,
    ScheduleAwareReduceLROnPlateau,
    TimeStopping,
)

keras.utils.set_random_seed(0)
x, y = load_digits(return_X_y=True)
x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)


def mlp(learning_rate=1e-3):
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer=tfoptim.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


# 1. Learning-rate range test: sweeps 1e-7..10 exponentially, then puts everything back.
model = mlp()
result = tfoptim.find_learning_rate(model, x_train, y_train, batch_size=64)
print(f"suggested learning rate: {result.suggestion:.2e} ({result.method})")
result.plot("lr_finder.png")
model.optimizer.learning_rate = result.suggestion

# 2. Stop when validation accuracy reaches 97%, or after 2 epochs without improvement.
# 3. Log learning rate, gradient norm, update/weight ratio and non-finite gradients.
# 4. Lower the rate on plateaus, whether it is a float or a schedule.
# 5. Roll back and halve the rate if a batch turns NaN. 6. Stop after 60 s. 7. A tqdm bar.
history = model.fit(
    x_train,
    y_train,
    validation_data=(x_val, y_val),
    epochs=20,
    batch_size=64,
    verbose=0,
    callbacks=[
        ConvergenceStopping(monitor="val_accuracy", threshold=0.97, patience=2),
        OptimizerMonitor(),
        ScheduleAwareReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1),
        NonFiniteRecovery(max_retries=3, factor=0.5),
        TimeStopping(seconds=60),
        ProgressBar(),
    ],
)
last = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
print(f"epochs: {len(history.history['loss'])}, last logs: {last}")
