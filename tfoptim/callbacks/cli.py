"""``tfoptim lr-find``: a learning-rate range test on a built-in example.

Trains nothing for good: it sweeps the learning rate of a small MLP on scikit-learn's
handwritten digits (shipped with scikit-learn, no download), prints the suggestion and writes
the plot (``lr_finder.png``) and the sweep (``lr_finder.json``) to ``--output``.
"""

import os


def add_arguments(parser):
    parser.add_argument("--output", default="tfoptim-lr-find", metavar="DIR",
                        help="folder for lr_finder.png and lr_finder.json (default: %(default)s)")
    parser.add_argument("--optimizer", default="adam",
                        help="any Keras optimizer name (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=100, help="sweep steps (default: %(default)s)")
    parser.add_argument("--min-lr", type=float, default=1e-7, help="default: %(default)g")
    parser.add_argument("--max-lr", type=float, default=10.0, help="default: %(default)g")
    parser.add_argument("--smoothing", type=float, default=0.98,
                        help="moving-average coefficient of the loss (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    parser.add_argument("--method", choices=("steepest", "minimum/10"), default="steepest",
                        help="how the suggestion is chosen (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def digits_data():
    """scikit-learn's 8x8 digits, pixels scaled to [0, 1]: ``(x, y)`` as float32 / int32."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def digits_model(optimizer="adam"):
    """A compiled 64-64-10 MLP for :func:`digits_data`."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(args):
    import keras

    from tfoptim.callbacks.lr_finder import find_learning_rate

    keras.utils.set_random_seed(args.seed)
    x, y = digits_data()
    model = digits_model(keras.optimizers.get(args.optimizer))
    result = find_learning_rate(
        model,
        x,
        y,
        batch_size=args.batch_size,
        min_learning_rate=args.min_lr,
        max_learning_rate=args.max_lr,
        num_steps=args.steps,
        smoothing=args.smoothing,
        method=args.method,
        progress=not args.no_progress,
    )
    os.makedirs(args.output, exist_ok=True)
    plot_path = os.path.join(args.output, "lr_finder.png")
    json_path = os.path.join(args.output, "lr_finder.json")
    result.plot(plot_path)
    result.to_json(json_path)
    optimizer_name = type(model.optimizer).__name__
    print(f"Learning-rate range test: {optimizer_name} on the digits MLP, {len(result.losses)} "
          f"steps{' (stopped at divergence)' if result.diverged else ''}.")
    for method, rate in result.suggestions.items():
        marker = "  <- suggestion" if method == result.method else ""
        print(f"  {method:>10}: {rate:.3g}{marker}")
    print(f"Plot: {plot_path}\nSweep: {json_path}")
    return 0
