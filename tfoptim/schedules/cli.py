"""``tfoptim schedule NAME --steps N [--ARG VALUE ...] [--output FILE.png] [--title TEXT]``.

Builds one schedule from command-line arguments, prints a few of its values and, with
``--output``, writes its curve as a PNG. Each ``--ARG VALUE`` is a constructor argument
(``--max_learning_rate 0.1`` or ``--max-learning-rate=0.1``); values are read as Python
literals (``0.1``, ``1e-4``, ``1000``, ``true``, ``[30, 80]`` or ``30,80``), as a schedule
written as a call (``"CosineDecayRestarts(0.1, first_decay_steps=200)"``), or else as text
(``cos``, ``1-sqrt``).
"""

import argparse
import ast
import inspect

KERAS_SCHEDULES = (
    "CosineDecay",
    "CosineDecayRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
)

EXAMPLES = """examples:
  tfoptim schedule OneCycle --steps 1000 --max_learning_rate 0.1 --total_steps 1000 \\
      --output one_cycle.png
  tfoptim schedule LinearWarmup --steps 1500 --warmup_steps 100 \\
      --schedule "CosineDecayRestarts(0.1, first_decay_steps=200, t_mul=2.0)"
  tfoptim schedule OneCycle --help      (that schedule's arguments)"""


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument(
        "name",
        metavar="NAME",
        help="a tfoptim.schedules class (OneCycle, CyclicalLearningRate, WarmupStableDecay, "
        "...) or a Keras one (CosineDecayRestarts, ...); case, '_' and '-' do not matter",
    )
    parser.add_argument("--steps", type=int, help="show steps 0 .. STEPS-1 (required)")
    parser.add_argument("--output", metavar="FILE.png", help="write the curve to this PNG")
    parser.add_argument("--title", help="the picture's title (default: the schedule's name)")
    parser.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        metavar="--ARG VALUE",
        help="the schedule's constructor arguments",
    )
    parser.set_defaults(_schedule_parser=parser)


def run(args):
    parser = args._schedule_parser
    tokens = list(args.arguments)
    classes = _schedule_classes()
    cls = _lookup(args.name, classes)
    if cls is None:
        parser.error(f"unknown schedule {args.name!r}; choose from: {', '.join(classes)}")
    if "-h" in tokens or "--help" in tokens:
        print(f"{cls.__name__}{inspect.signature(cls)}\n\n{inspect.getdoc(cls)}")
        return 0
    try:
        options = _split_options(tokens)
        # NAME swallows everything after it, so --steps, --output and --title may be here.
        output = options.pop("output", args.output)
        title = options.pop("title", args.title)
        steps = options.pop("steps", args.steps)
        kwargs = {key: _parse_value(text, classes) for key, text in options.items()}
    except ValueError as error:
        parser.error(str(error))
    if steps is None or not str(steps).isdigit() or int(steps) < 1:
        parser.error(f"--steps N with an integer N >= 1 is required. Received: {steps!r}")
    steps = int(steps)
    accepted = list(inspect.signature(cls).parameters)
    unknown = [key for key in kwargs if key not in accepted]
    if unknown:
        parser.error(
            f"{cls.__name__} takes no argument {', '.join('--' + k for k in unknown)}; "
            f"it takes: {', '.join('--' + k for k in accepted)}"
        )
    try:
        schedule = cls(**kwargs)
    except (TypeError, ValueError) as error:
        parser.error(f"{cls.__name__}: {error}")

    from tfoptim.schedules._base import describe
    from tfoptim.schedules.curves import plot, values

    rates = values(schedule, steps)
    print(describe(schedule))
    print(f"{'step':>10}  learning rate")
    for step in sorted({round(i * (steps - 1) / 10) for i in range(11)}):
        print(f"{step:>10}  {rates[step]:.6g}")
    print(
        f"min {rates.min():.6g} at step {int(rates.argmin())}, "
        f"max {rates.max():.6g} at step {int(rates.argmax())}"
    )
    if output:
        plot(schedule, steps, output, title=title)
        print(f"wrote {output}")
    return 0


def _schedule_classes():
    """Name -> class for every schedule the command can build, tfoptim's first."""
    import keras

    import tfoptim.schedules

    classes = {
        name: getattr(tfoptim.schedules, name)
        for name in tfoptim.schedules.__all__
        if isinstance(getattr(tfoptim.schedules, name), type)
    }
    classes.update({name: getattr(keras.optimizers.schedules, name) for name in KERAS_SCHEDULES})
    return classes


def _normalize(name):
    return name.lower().replace("_", "").replace("-", "")


def _lookup(name, classes):
    by_key = {_normalize(key): cls for key, cls in classes.items()}
    return by_key.get(_normalize(name))


def _split_options(tokens):
    """``["--a", "1", "--b=2", "--flag"]`` -> ``{"a": "1", "b": "2", "flag": "true"}``."""
    options = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--") or token == "--":
            raise ValueError(f"expected --ARG VALUE, got {token!r}")
        key, has_value, value = token[2:].partition("=")
        if not has_value:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if following is not None and not following.startswith("--"):
                value = following
                index += 1
            else:
                value = "true"
        key = key.replace("-", "_")
        if key in options:
            raise ValueError(f"--{key} is given twice")
        options[key] = value
        index += 1
    return options


def _parse_value(text, classes):
    """A number, bool, None, list, a schedule call, or else ``text`` itself."""
    if text.strip().lower() in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[text.strip().lower()]
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return text
    if isinstance(node, ast.Call):
        return _evaluate(node, classes)
    try:
        return _evaluate(node, classes, top_level=True)
    except ValueError:
        return text


def _evaluate(node, classes, top_level=False):
    """Evaluates literals and calls of known schedules only: no other code runs."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _evaluate(node.operand, classes, top_level)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_evaluate(item, classes) for item in node.elts]
    if isinstance(node, ast.Name):
        if top_level:
            raise ValueError(node.id)
        return {"True": True, "False": False, "None": None}.get(node.id, node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        cls = _lookup(node.func.id, classes)
        if cls is None:
            raise ValueError(
                f"unknown schedule {node.func.id!r}; choose from: {', '.join(classes)}"
            )
        positional = [_evaluate(arg, classes) for arg in node.args]
        keywords = {kw.arg: _evaluate(kw.value, classes) for kw in node.keywords}
        try:
            return cls(*positional, **keywords)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{cls.__name__}: {error}") from error
    raise ValueError(f"cannot read {ast.unparse(node)!r}: use numbers, lists and schedule calls")
