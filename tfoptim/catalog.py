"""``tfoptim list``: every optimizer with a one-line summary and its reference.

The text comes from each class's docstring (first line, and the paragraph after
``Reference:``/``References:``), so the list cannot drift from the documentation.
"""

import inspect
import re


def optimizers():
    """``name -> class`` for every public optimizer in ``tfoptim.optimizers``, the wrappers
    (Lookahead, SWA, SAM, ...) included."""
    import keras

    import tfoptim.optimizers as to

    return {
        name: obj
        for name in to.__all__
        if inspect.isclass(obj := getattr(to, name))
        and issubclass(obj, keras.optimizers.Optimizer)
        and obj is not to.Optimizer
    }


#: The optimizers by family, in reading order; ``family`` looks a class up here.
FAMILIES = {
    # Steps proportional to the gradient (with momentum, or a decaying rate).
    "classical": ("GradientDescent", "SGD", "DynamicGradientDescent"),
    # Per-coordinate step sizes from running moments: the rules Keras 3 has too.
    "adaptive": ("Adagrad", "RMSprop", "Adam", "AdamW", "Lion"),
    # TensorFlow Addons' optimizers, which have no Keras 3 release.
    "TF Addons successors": ("RAdam", "AdaBelief", "Yogi", "NovoGrad", "LARS", "LazyAdam", "ProximalAdagrad"),
    "today's methods": ("Adan", "MADGRAD", "AdEMAMix", "ADOPT", "ScheduleFreeSGD"),
    # Whole-matrix preconditioning or orthogonalisation of each weight matrix.
    "matrix methods": ("SOAP", "Shampoo", "Muon", "NorMuon", "PSGDKron"),
    # The step size is estimated (D-Adaptation, Prodigy) or bet (COCOB), not tuned.
    "learning-rate-free": ("Prodigy", "DAdaptAdam", "COCOB"),
    # Around any other optimizer.
    "wrappers": ("Lookahead", "SWA", "SAM", "ScheduleFree", "GradientCentralization", "AdaptiveGradientClipping"),
}


def family(cls):
    """The family (a key of ``FAMILIES``) of an optimizer class or instance."""
    name = cls.__name__ if isinstance(cls, type) else type(cls).__name__
    for family_name, members in FAMILIES.items():
        if name in members:
            return family_name
    raise ValueError(f"{name} is in no family of tfoptim.catalog.FAMILIES")


def describe(cls):
    """``(summary, reference)`` read from the class docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    summary = doc.splitlines()[0] if doc else ""
    match = re.search(r"References?:\s*(.+?)(?:\n\s*\n|$)", doc, re.S)
    reference = " ".join(match.group(1).split()) if match else ""
    return summary, reference


def add_arguments(parser):
    parser.add_argument("--references", action="store_true", help="print the full references")


def run(args):
    rows = [(name, *describe(cls)) for name, cls in optimizers().items()]
    width = max(len(name) for name, _, _ in rows)
    for name, summary, reference in rows:
        print(f"{name:<{width}}  {summary}")
        if args.references:
            print(f"{'':<{width}}  reference: {reference}")
