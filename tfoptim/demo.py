"""``tfoptim demo``: the seed document's linear regression, fitted with every optimizer.

The document's TF1 example fits ``y = 2x + 1 + u``, ``u ~ U[0, 1)``, on 100 points, but
multiplies the input by a hard-coded 2 and learns only a scale. Here both the weight and the
bias are learned (the least-squares answer is about ``w = 2, b = 1.5``: the noise has mean 0.5),
with full-batch gradient steps, and each optimizer is judged against the exact least-squares
optimum: how many steps until its loss is within 1% of it. The picture has one panel per
optimizer family (``tfoptim.catalog.FAMILIES``) and every optimizer ranked by that count.
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
        # SAM's steps count calls: two per SAM step.
        "SAM (Adam)": lambda: to.SAM(to.Adam(0.05), rho=0.01),
        "ScheduleFree (SGD)": lambda: to.ScheduleFree(to.SGD(0.1)),
        # Centralizing the 1x1 weight's gradient would zero it (one input's mean is itself):
        # only convolution kernels are centralized, so here it steps as Adam.
        "GradientCentralization (Adam)": lambda: to.GradientCentralization(to.Adam(0.05), conv_only=True),
        "AdaptiveGradientClipping (Adam)": lambda: to.AdaptiveGradientClipping(to.Adam(0.05), clip_factor=0.1),
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
        "Shampoo": lambda: to.Shampoo(0.05, precondition_frequency=1),
        # The 1x1 weight is the model's output head: the AdamW fallback steps everything.
        "Muon": lambda: to.Muon(0.05, weight_decay=1e-4),
        "NorMuon": lambda: to.NorMuon(0.05, adam_lr_ratio=1.0),
        "PSGDKron": lambda: to.PSGDKron(0.05),
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

    from tfoptim.catalog import family

    x, y = make_data()
    best_weight, best_bias, optimum = least_squares(x, y)
    records, curves, families = [], {}, {}
    names = demo_optimizers()
    for name, make in tqdm(names.items(), desc="optimizers", disable=not progress, leave=False):
        optimizer = make()
        start = time.perf_counter()
        losses, weight, bias = fit_linear(optimizer, x, y, steps)
        seconds = time.perf_counter() - start
        curves[name] = losses
        families[name] = family(optimizer)
        records.append(
            {
                "optimizer": name,
                "family": families[name],
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
        plot_curves(curves, families, optimum, output / "loss_curves.png")
    return records, summary


def _rate(optimizer):
    # Lookahead and SWA hold no rate of their own: their inner optimizer's applies.
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    rate = optimizer.get_config()["learning_rate"]
    return rate if isinstance(rate, float) else str(rate)


def plot_curves(curves, families, optimum, path):
    """Small multiples, one panel per family (``tfoptim.catalog.FAMILIES``), of each optimizer's
    excess loss over the optimum, and below them every optimizer ranked by steps to 1%.

    ``curves``: name -> losses; ``families``: name -> family. Sized to be read at 900 px wide.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfoptim.catalog import FAMILIES

    order = [f for f in FAMILIES if f in families.values()]
    family_colour = dict(zip(order, plt.get_cmap("Dark2").colors))
    # The excess over the optimum is where the rates differ visibly; it is clipped at float32's
    # resolution of the loss (below it the difference is rounding).
    floor = float(np.finfo(np.float32).eps) * optimum
    target = 0.01 * optimum
    rows = -(-len(order) // 2)
    reached = {name: steps_to_converge(losses, optimum) for name, losses in curves.items()}
    # Fastest first; those that never come within 1% last.
    ranked = sorted(curves, key=lambda name: (reached[name] is None, reached[name] or 0, name))
    # Fixed margins in inches (a layout engine would double the drawing time): the title above,
    # tick labels at the left (the optimizers' names for the ranking), axis labels below.
    width, top, panel, gap, rank_height = 9, 0.75, 1.9, 0.55, 0.19 * len(ranked)
    panels_bottom = top + rows * panel + (rows - 1) * gap
    height = panels_bottom + 0.75 + rank_height + 0.5
    fig = plt.figure(figsize=(width, height), dpi=100)
    grid = fig.add_gridspec(
        rows,
        2,
        left=0.75 / width,
        right=1 - 0.1 / width,
        top=1 - top / height,
        bottom=1 - panels_bottom / height,
        hspace=gap / panel,
        wspace=0.05,
    )
    # The ranking's names at 8 points: about 0.07 inch per character.
    names_width = max(1.75, 0.25 + 0.07 * max(len(name) for name in ranked))
    ax_rank = fig.add_axes((names_width / width, 0.5 / height, 1 - (names_width + 0.1) / width, rank_height / height))
    first = None
    for index, family_name in enumerate(order):
        ax = fig.add_subplot(grid[index // 2, index % 2], sharex=first, sharey=first)
        first = first or ax
        members = [n for n in curves if families[n] == family_name]
        for line, name in enumerate(members):
            losses = curves[name]
            # Step 0 is everyone's shared start; a log step axis needs it left out.
            steps = np.arange(1, len(losses))
            # Alternate dashes so that coinciding curves (Adam and AdamW here) both show.
            style = "-" if line % 2 == 0 else "--"
            ax.plot(steps, np.maximum(losses[1:] - optimum, floor), style, label=name, linewidth=1.4)
        ax.axhline(target, color="black", linestyle=":", linewidth=0.9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(family_name, fontsize=10, color=family_colour[family_name], fontweight="bold")
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="lower left", frameon=True, framealpha=0.85, handlelength=1.5)
        if index % 2:
            ax.tick_params(labelleft=False)
        else:
            ax.set_ylabel("loss − optimum", fontsize=8)
        if index + 2 >= len(order):  # the lowest panel of its column
            ax.set_xlabel("step", fontsize=8)
    position = np.arange(len(ranked))
    lengths = [reached[name] or 0 for name in ranked]
    ax_rank.barh(position, lengths, color=[family_colour[families[n]] for n in ranked], height=0.7)
    for y, name in zip(position, ranked):
        steps = reached[name]
        label = f" {steps}" if steps is not None else f" not reached in {len(curves[name]) - 1} steps"
        ax_rank.text(steps or 0, y, label, va="center", fontsize=7)
    ax_rank.set_yticks(position, ranked, fontsize=8)
    ax_rank.set_ylim(len(ranked) - 0.5, -0.5)  # fastest at the top
    ax_rank.set_xlabel("steps until the loss is within 1% of the optimum (fewer is faster)", fontsize=8)
    ax_rank.tick_params(axis="x", labelsize=8)
    ax_rank.spines[["top", "right"]].set_visible(False)
    ax_rank.legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=family_colour[f]) for f in order],
        labels=order,
        fontsize=7,
        loc="upper right",
        title="family",
        title_fontsize=7,
    )
    fig.suptitle(
        "y = 2x + 1 + U[0,1), full-batch steps: loss above the least-squares optimum (dotted: 1% of it)",
        fontsize=10,
        y=1 - 0.15 / height,
    )
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
