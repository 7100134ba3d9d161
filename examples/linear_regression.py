"""The seed document's TF1 example, modernized.

The original (TF1) builds ``loss = mean((y - (2 * X * theta + 1))**2)`` and runs
``tf.train.XOptimizer.apply_gradients`` in graph mode, printing step, theta and loss. It hard-codes
the slope's factor 2 and the intercept 1, so it only learns a scale. Here a ``Dense(1)`` layer
learns both the weight and the bias, with each classical tfoptim optimizer, twice:

1. through ``model.fit`` (full batch, one step per epoch), and
2. through a custom ``tf.GradientTape`` loop compiled with ``tf.function``,

printing ``Step, weight, bias, loss`` as the original did. Both runs start from the same weights
and take the same steps, so they print the same numbers.

Run: ``python examples/linear_regression.py [--steps 300] [--every 100]``.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfoptim  # noqa: E402
from tfoptim.demo import least_squares, make_data  # noqa: E402

OPTIMIZERS = {
    "GradientDescent": lambda: tfoptim.optimizers.GradientDescent(learning_rate=0.5),
    "SGD": lambda: tfoptim.optimizers.SGD(learning_rate=0.1, momentum=0.9),
    "DynamicGradientDescent": lambda: tfoptim.optimizers.DynamicGradientDescent(0.5, decay_rate=0.999),
    "Adagrad": lambda: tfoptim.optimizers.Adagrad(learning_rate=0.5),
    "RMSprop": lambda: tfoptim.optimizers.RMSprop(learning_rate=0.01),
    "Adam": lambda: tfoptim.optimizers.Adam(learning_rate=0.05, beta_1=0.9, beta_2=0.99),
    "AdamW": lambda: tfoptim.optimizers.AdamW(learning_rate=0.05, weight_decay=1e-4),
}


def new_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])


def report(step, model, loss):
    weight, bias = (float(np.ravel(w)[0]) for w in model.get_weights())
    print(f"Step: {step}, weight: {weight:.6f}, bias: {bias:.6f}, loss: {loss:.6f}")


class PrintEvery(keras.callbacks.Callback):
    def __init__(self, every):
        super().__init__()
        self.every = every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            report(epoch + 1, self.model, logs["loss"])


def with_fit(make_optimizer, x, y, steps, every):
    model = new_model()
    model.compile(optimizer=make_optimizer(), loss="mse")
    model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0, callbacks=[PrintEvery(every)])
    return model


def with_custom_loop(make_optimizer, x, y, steps, every):
    model = new_model()
    optimizer = make_optimizer()
    loss_fn = keras.losses.MeanSquaredError()

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    x, y = tf.constant(x), tf.constant(y)
    for step in range(1, steps + 1):
        loss = train_step(x, y)
        if step % every == 0:
            # model.fit's logs hold the loss of the batch before its update; so does this one.
            report(step, model, float(loss))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()

    x, y = make_data()
    weight, bias, loss = least_squares(x, y)
    print(f"least squares: weight={weight:.6f} bias={bias:.6f} loss={loss:.6f}\n")
    for name, make_optimizer in OPTIMIZERS.items():
        print(f"== {name}: model.fit")
        with_fit(make_optimizer, x, y, args.steps, args.every)
        print(f"== {name}: custom tf.function loop")
        with_custom_loop(make_optimizer, x, y, args.steps, args.every)
        print()


if __name__ == "__main__":
    main()
