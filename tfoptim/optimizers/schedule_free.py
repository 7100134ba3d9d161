import keras
from keras import ops

from tfoptim._validation import check_non_negative, check_range, check_steps
from tfoptim.optimizers._moments import scalar_dtype
from tfoptim.optimizers._wrapper import OptimizerWrapper


@keras.saving.register_keras_serializable(package="tfoptim")
class ScheduleFree(OptimizerWrapper):
    """Schedule-free interpolation and averaging around any optimizer.

    The inner optimizer's step ``u`` (what it would add to the weights) moves a sequence ``z``;
    ``x`` is a weighted running average of ``z``, and the gradient is taken at their
    interpolation ``y``, which is what the model holds during training. At step ``t = 1, 2,
    ...``, with ``lr`` the inner optimizer's current learning rate::

        s_t      = min(1, t / warmup_steps)                           (linear warm-up)
        lr_max   = max(lr_max, lr * s_t)
        w_t      = t**r * lr_max**weight_lr_power;  W <- W + w_t;  c = w_t / W
        u        = s_t * (inner step from y with g)     (g taken at y)
        y        <- y + c (z - y) + (1 - momentum (1 - c)) u
        z        <- z + u

    which keeps ``y = momentum * x + (1 - momentum) * z`` with ``x <- (1 - c) x + c z``. The
    inner optimizer steps the model's weights in place and ``u`` is read off as the difference
    (``y`` is copied first), so any optimizer works, and its decoupled weight decay applies at
    ``y``, as the official's. State: ``z`` (one slot) besides the inner optimizer's.

    It is the official ``AdamWScheduleFree`` with an Adam without first moment for the inner
    rule, ``tfoptim.compat.torch.AdamW(lr, betas=(0, beta_2), eps, weight_decay)``
    (``momentum`` is the official ``beta_1``), and ``SGDScheduleFree`` with
    ``tfoptim.SGD(lr, coupled_weight_decay=weight_decay)`` (``schedulefree`` 1.4.1, both
    exact: ``u`` is proportional to the rate, so scaling it is scaling the rate). Keras's
    ``ScheduleFreeAdamW`` is the first with ``weight_lr_power=0`` (its average weighs the
    points equally; its ``weight_decay`` shrinks ``y`` alone, not ``z``). As optax's
    ``contrib.schedule_free`` wraps any transformation, this wraps any Keras optimizer; give it
    one without momentum (the interpolation is the momentum). The warm-up scales the inner
    step, which equals warming up its rate for rules whose step is proportional to the rate
    (SGD without momentum, the Adam family; not Keras's SGD with momentum, whose velocity
    holds the rate).

    Evaluate (and deploy) ``x``, not ``y``: :meth:`evaluation_values` returns it and
    :class:`tfoptim.callbacks.EvaluationWeights` swaps it in around validation, saving and at
    the end of training (the official ``optimizer.eval()``). Inside :class:`Lookahead` or
    :class:`SWA` (``Lookahead(ScheduleFree(...))``), those wrappers act on the model's weights,
    which are ``y``: the slow weights and the average are of ``y``, their evaluation weights
    too, and ``x`` is not used. ``iterations`` and the learning
    rate are the inner optimizer's; with its ``gradient_accumulation_steps`` the average
    advances on its update steps only.

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled"
    (NeurIPS 2024).

    Args:
        optimizer: the inner optimizer: any ``keras.optimizers.Optimizer`` (built-in or
            tfoptim), or its name.
        momentum: interpolation between ``x`` and ``z``, in (0, 1). Defaults to 0.9.
        warmup_steps: linear warm-up of the inner step over this many steps (integer >= 0).
            Defaults to 0.
        r: polynomial weighting power of the average (>= 0). Defaults to 0.0.
        weight_lr_power: the average weights the points by ``lr_max**weight_lr_power``
            (>= 0). Defaults to 2.0.
        name: defaults to "schedule_free".
    """

    def __init__(self, optimizer, momentum=0.9, warmup_steps=0, r=0.0, weight_lr_power=2.0, name=None,
                 **kwargs):
        super().__init__(optimizer, name=name, **kwargs)
        self.momentum = check_range("momentum", momentum, 0.0, 1.0, low_open=True, high_open=True)
        self.warmup_steps = check_steps("warmup_steps", warmup_steps)
        self.r = check_non_negative("r", r)
        self.weight_lr_power = check_non_negative("weight_lr_power", weight_lr_power)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._z = self.add_optimizer_variables(variables, "z")
        # The average's normaliser and the largest rate so far: one pair per optimizer, in
        # float64 when any variable is (the official keeps them as Python floats).
        dtype = "float64" if any(scalar_dtype(v.dtype) == "float64" for v in variables) else "float32"
        self._lr_max = self.add_variable((), initializer=keras.initializers.Constant(-1.0), dtype=dtype,
                                         aggregation="only_first_replica", name="lr_max")
        self._weight_sum = self.add_variable((), dtype=dtype, aggregation="only_first_replica",
                                             name="weight_sum")

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        trainable_variables = self._built_for(trainable_variables)
        stepped = [v for g, v in zip(grads, trainable_variables) if g is not None]
        with keras.name_scope(self.name, caller=self):
            coefficients = self._advance_average()
            # z starts at the weights of the first step. Not in build: without a strategy Keras
            # builds while tracing the first step, where an assign would become part of every step.
            self._update_each(lambda: ops.equal(self.iterations, 0), self._start, stepped)
            before = [ops.copy(ops.convert_to_tensor(v)) for v in stepped]
        self.inner_optimizer.apply(grads, trainable_variables)
        with keras.name_scope(self.name, caller=self):
            self._update_each(None, self._interpolate, stepped, [(y, *coefficients) for y in before])

    def _advance_average(self):
        """Advances ``lr_max`` and ``W`` (in replica context, like ``iterations``) on the inner
        optimizer's update steps; returns ``(c, s_t)``, ``c = 0`` on the steps it only
        accumulates (its step is then zero, and so is the update of ``y`` and ``z``)."""
        inner = self.inner_optimizer
        dtype = self._weight_sum.dtype
        due = self._updates(after=False)
        step = ops.cast(self.iterations + 1, dtype)
        scale = ops.minimum(step / self.warmup_steps, 1.0) if self.warmup_steps else ops.ones((), dtype)
        rate = ops.cast(inner.learning_rate, dtype) * scale
        # Read as tensors: JAX's `where` does not take a Keras variable.
        lr_max, total = ops.convert_to_tensor(self._lr_max), ops.convert_to_tensor(self._weight_sum)
        lr_max = ops.where(due, ops.maximum(lr_max, rate), lr_max)
        weight = ops.power(step, self.r) * ops.power(lr_max, self.weight_lr_power)
        total = ops.where(due, total + weight, total)
        self._lr_max.assign(lr_max)
        self._weight_sum.assign(total)
        c = ops.where(ops.logical_and(due, total > 0), weight / ops.where(total > 0, total, 1.0), 0.0)
        return c, scale

    def _start(self, variable):
        self.assign(self._slot(self._z, variable), variable)

    def _interpolate(self, variable, values):
        before, c, scale = values
        dtype = variable.dtype
        c, scale = ops.cast(c, dtype), ops.cast(scale, dtype)
        z = self._slot(self._z, variable)
        step = ops.multiply(ops.subtract(variable, before), scale)
        towards_z = ops.multiply(ops.subtract(z, before), c)
        interpolated = ops.add(ops.add(before, towards_z), ops.multiply(step, 1 - self.momentum * (1 - c)))
        self.assign(variable, interpolated)
        self.assign_add(z, step)

    def evaluation_values(self, variables):
        """The ``x`` (averaged) weights of ``variables``, the official ``eval()`` mode:
        ``y + (1 - 1/momentum) (z - y)`` (``y`` before the first step)."""
        started = ops.greater(self.iterations, 0)
        values = []
        for variable in variables:
            z = ops.convert_to_tensor(self._slot(self._z, variable))
            y = ops.convert_to_tensor(variable)
            x = ops.add(y, ops.multiply(ops.subtract(z, y), 1 - 1 / self.momentum))
            values.append(ops.where(started, x, y))
        return values

    def get_config(self):
        return self._config(momentum=self.momentum, warmup_steps=self.warmup_steps, r=self.r,
                            weight_lr_power=self.weight_lr_power)
