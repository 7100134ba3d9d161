import keras
from keras import ops

from tfoptim._validation import check_non_negative, check_range, check_steps
from tfoptim.optimizers._moments import scalar_dtype
from tfoptim.optimizers.base import Optimizer
from tfoptim.optimizers.graph import conditional_update


@keras.saving.register_keras_serializable(package="tfoptim")
class ScheduleFreeSGD(Optimizer):
    """Schedule-Free SGD: momentum by interpolation, a running average instead of a schedule.

    Three sequences per parameter: ``z`` takes plain SGD steps, ``x`` is a weighted running
    average of ``z``, and the gradient is taken at their interpolation ``y``, which is what the
    model holds during training. At step ``t = 1, 2, ...`` (``k = t - 1``)::

        lr_t     = lr * min(1, t / warmup_steps)                      (linear warm-up)
        lr_max   = max(lr_max, lr_t)
        w_t      = t**r * lr_max**weight_lr_power;  W <- W + w_t;  c = w_t / W
        z        <- z - lr_t * g                        (g taken at y)
        x        <- (1 - c) * x + c * z
        y        <- momentum * x + (1 - momentum) * z

    Only ``z`` is stored (one slot): ``y`` is the variable and ``x = (y - (1 - momentum) z) /
    momentum``. As in the official implementation, ``y`` is updated in place without forming
    ``x``: ``y <- lerp(y, z, c) + lr_t * (momentum * (1 - c) - 1) * g``, then the ``z`` step.

    Evaluate (and deploy) the ``x`` weights, not ``y``: :meth:`evaluation_values` returns them
    and :class:`tfoptim.callbacks.EvaluationWeights` swaps them in around validation, saving and
    at the end of training (the official ``optimizer.eval()``/``optimizer.train()``).

    Follows the authors' implementation (``schedulefree`` 1.4.1, ``SGDScheduleFree``), which
    goes beyond the paper's Algorithm 1 (``c = 1 / t``) in two ways, both kept here: the
    averaging weight is ``t**r * lr_max**weight_lr_power`` (the paper's Section 6 ties the
    weight to the warm-up learning rate, defaults r=0, power 2), and the warm-up is built in.
    With ``warmup_steps=0`` and a constant rate the weights are equal and ``c = 1 / t``, the
    paper's rule. The official ``weight_decay`` is L2 added to the gradient at ``y``: here that
    is ``coupled_weight_decay``. Keras's ``weight_decay`` (decoupled) shrinks ``y`` only, as in
    Keras's own ``ScheduleFreeAdamW``. ``iterations`` counts the steps, as ``k`` does.

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled"
    (NeurIPS 2024).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 1.0 (the
            official default; SGD rates for networks are typically 10-50x larger than with
            a schedule).
        momentum: interpolation between ``x`` and ``z``, in (0, 1). Defaults to 0.9.
        warmup_steps: linear warm-up of the rate over this many steps (integer >= 0).
            Defaults to 0.
        r: polynomial weighting power of the average (>= 0). Defaults to 0.0.
        weight_lr_power: the average weights the points by ``lr_max**weight_lr_power``
            (>= 0). Defaults to 2.0.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=1.0,
        momentum=0.9,
        warmup_steps=0,
        r=0.0,
        weight_lr_power=2.0,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
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
        self._lr_max = self.add_variable((), initializer=keras.initializers.Constant(-1.0),
                                         dtype=dtype, aggregation="only_first_replica", name="lr_max")
        self._weight_sum = self.add_variable((), dtype=dtype, aggregation="only_first_replica",
                                             name="weight_sum")

    def _scheduled(self, learning_rate):
        """``(t, lr_t)`` of the step being applied, in the scalar state's dtype."""
        dtype = self._weight_sum.dtype
        step = ops.cast(self.iterations + 1, dtype)
        rate = ops.cast(learning_rate, dtype)
        if self.warmup_steps:
            rate = rate * ops.minimum(step / self.warmup_steps, 1.0)
        return step, rate

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The average's weight is per step, not per variable: advanced once here, before the
        # per-variable rule (in replica context, like `iterations`), then read by update_step.
        step, rate = self._scheduled(learning_rate)
        lr_max = ops.maximum(self._lr_max, rate)
        self._lr_max.assign(lr_max)
        weight = ops.power(step, self.r) * ops.power(lr_max, self.weight_lr_power)
        self._weight_sum.assign_add(weight)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        step, rate = self._scheduled(learning_rate)
        weight = ops.power(step, self.r) * ops.power(ops.convert_to_tensor(self._lr_max), self.weight_lr_power)
        total = ops.convert_to_tensor(self._weight_sum)
        c = ops.where(total > 0, weight / ops.where(total > 0, total, 1.0), 0.0)
        g_scale = ops.cast(rate * (self.momentum * (1 - c) - 1), dtype)
        c, rate = ops.cast(c, dtype), ops.cast(rate, dtype)
        gradient = ops.cast(gradient, dtype)
        z = self._z[self._get_variable_index(variable)]

        def start():
            self.assign(z, variable)

        # z starts at the weights of the first step, as the official's lazily created state.
        # Not in build: without a strategy Keras builds while tracing the first step, where an
        # assign would become part of every step.
        conditional_update(ops.equal(self.iterations, 0), start, [z, variable])
        self.assign_add(variable, ops.multiply(ops.subtract(z, variable), c))
        self.assign_add(variable, ops.multiply(gradient, g_scale))
        self.assign_sub(z, ops.multiply(gradient, rate))

    def evaluation_values(self, variables):
        """The ``x`` (averaged) weights of ``variables``, the official ``eval()`` mode:
        ``y + (1 - 1/momentum) (z - y)``."""
        values = []
        for variable in variables:
            z = self.slot_value(self._z, variable)
            y = ops.convert_to_tensor(variable)
            values.append(ops.add(y, ops.multiply(ops.subtract(z, y), 1 - 1 / self.momentum)))
        return values
