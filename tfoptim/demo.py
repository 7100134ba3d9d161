"""``tfoptim demo``: the seed document's linear regression, fitted with every optimizer.

The document's TF1 example fits ``y = 2x + 1 + u``, ``u ~ U[0, 1)``, on 100 points, but
multiplies the input by a hard-coded 2 and learns only a scale. Here both the weight and the
bias are learned (the least-squares answer is about ``w = 2, b = 1.5``: the noise has mean 0.5),
with full-batch gradient steps, and each optimizer is judged against the exact least-squares
optimum: how many steps until its loss is within 1% of it.
"""

import json
import time
from pathlib import Path

import numpy as np

DEFAULT_STEPS = 1000
SEED = 0


def make_data(n=100, seed=SEED):
    """The document's data: ``x ~ U[0, 1)``, ``y = 2x + 1 + U[0, 1)``, as float32 columns."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 1)).astype("float32")
    y = (2 * x + 1 + rng.random((n, 1))).astype("float32")
    return x, y


def least_squares(x, y):
    """The exact optimum ``(weight, bias, mean squared error)``."""
    design = np.hstack([x, np.ones_like(x)]).astype("float64")
    (weight, bias), *_ = np.linalg.lstsq(design, y[:, 0].astype("float64"), rcond=None)
    loss = float(np.mean((design @ [weight, bias] - y[:, 0]) ** 2))
    return float(weight), float(bias), loss


def demo_optimizers():
    """Every optimizer in the package, at a learning rate suited to this small problem."""
    from tfoptim import optimizers as to

    return {
        "GradientDescent": lambda: to.GradientDescent(0.5),
        "SGD (momentum 0.9)": lambda: to.SGD(0.1, momentum=0.9),
        "SGD (Nesterov)": lambda: to.SGD(0.1, momentum=0.9, nesterov=True),
        "DynamicGradientDescent": lambda: to.DynamicGradientDescent(0.5, decay_rate=0.999),
        "Adagrad": lambda: to.Adagrad(0.5),
        "RMSprop": lambda: to.RMSprop(0.01),
        "Adam": lambda: to.Adam(0.05),
        "AdamW": lambda: to.AdamW(0.05, weight_decay=1e-4),
        "ScheduleFreeSGD": lambda: to.ScheduleFreeSGD(0.5),
        "Lookahead (Adam)": lambda: to.Lookahead(to.Adam(0.05)),
        "SWA (SGD momentum 0.9)": lambda: to.SWA(to.SGD(0.1, momentum=0.9), average_period=5),
        "Prodigy": lambda: to.Prodigy(),
        "DAdaptAdam": lambda: to.DAdaptAdam(),
        "LARS": lambda: to.LARS(0.1, trust_coefficient=0.1),
        "LazyAdam": lambda: to.LazyAdam(0.05),
        "COCOB": lambda: to.COCOB(),
        "ProximalAdagrad": lambda: to.ProximalAdagrad(0.5),
        "Adan": lambda: to.Adan(0.05),
        "MADGRAD": lambda: to.MADGRAD(0.01),
        "AdEMAMix": lambda: to.AdEMAMix(0.05),
        "ADOPT": lambda: to.ADOPT(0.05),
        "Lion": lambda: to.Lion(0.02),
        "RAdam": lambda: to.RAdam(0.05),
        "AdaBelief": lambda: to.AdaBelief(0.05),
        "Yogi": lambda: to.Yogi(0.05),
        "NovoGrad": lambda: to.NovoGrad(0.1),
        "SOAP": lambda: to.SOAP(0.05),
        # The 1x1 weight is the model's output head: the AdamW fallback steps everything.
        "Muon": lambda: to.Muon(0.05, weight_decay=1e-4),
        "NorMuon": lambda: to.NorMuon(0.05, adam_lr_ratio=1.0),
    }


def fit_linear(optimizer, x, y, steps, seed=SEED):
    """Fits ``y = w x + b`` in a ``tf.function`` loop; returns ``(losses, weight, bias)``.

    ``losses[i]`` is the mean squared error after ``i`` updates (``losses[0]``: at the start).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    weight = keras.Variable(np.random.default_rng(seed).random((1, 1)), dtype="float32", name="weight")
    bias = keras.Variable(np.zeros((1,)), dtype="float32", name="bias")
    variables = [weight, bias]
    optimizer.build(variables)
    x, y = tf.constant(x), tf.constant(y)

    def loss_fn():
        return tf.reduce_mean((y - (x @ weight.value + bias.value)) ** 2)

    @tf.function
    def train(steps):
        losses = tf.TensorArray(tf.float32, size=steps + 1)
        losses = losses.write(0, loss_fn())
        for i in tf.range(steps):
            with tf.GradientTape() as tape:
                loss = loss_fn()
            optimizer.apply(tape.gradient(loss, variables), variables)
            losses = losses.write(i + 1, loss_fn())
        return losses.stack()

    losses = train(tf.constant(steps)).numpy()
    return losses, float(weight.numpy()[0, 0]), float(bias.numpy()[0])


def steps_to_converge(losses, optimum, tolerance=0.01):
    """First step whose loss is within ``tolerance`` of the optimum, or None."""
    hits = np.flatnonzero(losses <= optimum * (1 + tolerance))
    return int(hits[0]) if hits.size else None


def run_demo(steps=DEFAULT_STEPS, output=None, progress=True):
    """Runs every optimizer; returns the list of result records (and writes files if asked)."""
    from tqdm import tqdm

    x, y = make_data()
    best_weight, best_bias, optimum = least_squares(x, y)
    records, curves = [], {}
    names = demo_optimizers()
    for name, make in tqdm(names.items(), desc="optimizers", disable=not progress, leave=False):
        optimizer = make()
        start = time.perf_counter()
        losses, weight, bias = fit_linear(optimizer, x, y, steps)
        seconds = time.perf_counter() - start
        curves[name] = losses
        records.append(
            {
                "optimizer": name,
                "config": optimizer.get_config() | {"learning_rate": _rate(optimizer)},
                "final_loss": float(losses[-1]),
                "weight": weight,
                "bias": bias,
                "steps_to_converge": steps_to_converge(losses, optimum),
                "seconds": seconds,
            }
        )
    summary = {
        "steps": steps,
        "seed": SEED,
        "least_squares": {"weight": best_weight, "bias": best_bias, "loss": optimum},
    }
    if output is not None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "results.json").write_text(json.dumps(records, indent=2, default=str))
        (output / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_curves(curves, optimum, output / "loss_curves.png")
    return records, summary


def _rate(optimizer):
    # Lookahead and SWA hold no rate of their own: their inner optimizer's applies.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    rate = optimizer.get_config()["learning_rate"]
    return rate if isinstance(rate, float) else str(rate)


def plot_curves(curves, optimum, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Left: the loss itself. Right: its excess over the optimum, where the rates differ visibly,
    # clipped at float32's resolution of the loss (below it the difference is rounding).
    floor = float(np.finfo(np.float32).eps) * optimum
    fig, (ax_loss, ax_excess) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for name, losses in curves.items():
        steps = np.arange(len(losses))
        ax_loss.plot(steps, losses, label=name, linewidth=1.2)
        ax_excess.plot(steps, np.maximum(losses - optimum, floor), label=name, linewidth=1.2)
    ax_loss.axhline(optimum, color="black", linestyle="--", linewidth=0.8, label="least-squares optimum")
    ax_excess.axhline(0.01 * optimum, color="black", linestyle=":", linewidth=0.8, label="1% of the optimum")
    for ax, label in ((ax_loss, "mean squared error"), (ax_excess, "loss - least-squares optimum")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(label)
    fig.suptitle("y = 2x + 1 + U[0,1), full-batch steps")
    ax_excess.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def format_table(records, summary):
    ls = summary["least_squares"]
    lines = [
        f"least squares: weight={ls['weight']:.4f} bias={ls['bias']:.4f} loss={ls['loss']:.6f}",
        f"{'optimizer':<24} {'final loss':>11} {'weight':>8} {'bias':>8} {'steps to 1%':>12} {'seconds':>8}",
    ]
    for r in records:
        steps = "not reached" if r["steps_to_converge"] is None else str(r["steps_to_converge"])
        lines.append(
            f"{r['optimizer']:<24} {r['final_loss']:>11.6f} {r['weight']:>8.4f} {r['bias']:>8.4f} "
            f"{steps:>12} {r['seconds']:>8.2f}"
        )
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--output", default="tfoptim-demo", help="folder for results.json and loss_curves.png")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="full-batch steps per optimizer")


def run(args):
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    records, summary = run_demo(steps=args.steps, output=args.output)
    print(format_table(records, summary))
    print(f"wrote {Path(args.output) / 'results.json'} and {Path(args.output) / 'loss_curves.png'}")
