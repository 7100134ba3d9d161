import keras
from keras import ops

from tfoptim.optimizers._moments import adam_step, bias_correction, local_step
from tfoptim.optimizers.adam import Adam
from tfoptim.optimizers.graph import tf_variable


@keras.saving.register_keras_serializable(package="tfoptim")
class LazyAdam(Adam):
    """LazyAdam: Adam that, for sparse gradients, updates only the rows the gradient touches.

    With a dense gradient it is :class:`Adam`, step for step. With a ``tf.IndexedSlices``
    gradient (an ``Embedding`` lookup's, on the TensorFlow backend) the moments and the
    variable change only in the rows ``i`` that received a gradient, with Adam's rule on those
    rows and the global step ``t``::

        m[i]     <- beta_1 * m[i] + (1 - beta_1) * g[i]
        v[i]     <- beta_2 * v[i] + (1 - beta_2) * g[i]**2
        theta[i] <- theta[i] - alpha * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m[i] / (sqrt(v[i]) + eps)

    Rows absent from the batch keep their moments (Adam would decay them) and do not move
    (Adam would keep moving them on their momentum). That costs time proportional to the rows
    touched, not to the table, which is the point for large embeddings; it is also a
    different trajectory from Adam's. Repeated indices are summed first, as TensorFlow's
    optimizers always did. ``amsgrad`` (which TFA's ``LazyAdam`` rejects) and
    ``bias_corrected_epsilon`` apply row-wise the same way.

    What stays dense: ``coupled_weight_decay`` adds ``lambda * theta`` for every row, so the
    gradient becomes dense and the step is Adam's; Keras's decoupled ``weight_decay`` shrinks
    every row each step, touched or not.

    Reference: TensorFlow Addons' ``tfa.optimizers.LazyAdam`` (after
    ``tf.contrib.opt.LazyAdamOptimizer``), on Kingma & Ba, "Adam: A Method for Stochastic
    Optimization" (ICLR 2015).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        beta_1: decay of the first moment, in [0, 1). Defaults to 0.9.
        beta_2: decay of the second moment, in [0, 1). Defaults to 0.999.
        epsilon: > 0. Defaults to 1e-7.
        amsgrad: use the running maximum of ``v`` (AMSGrad). Defaults to False.
        bias_corrected_epsilon: where epsilon goes, see :class:`Adam`. Defaults to False.
        cautious: must stay False: the cautious mask is rescaled by its mean over the whole
            variable, which a step over some rows does not see.
        moment_dtype: ``"float32"`` or ``"bfloat16"``, as in :class:`Adam` (the rows' moments
            are rounded when written).
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    lazy_sparse = True

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        bias_corrected_epsilon=False,
        cautious=False,
        moment_dtype="float32",
        name=None,
        **kwargs,
    ):
        if cautious:
            raise ValueError(
                "`cautious` of LazyAdam must be False (its sparse steps see some rows of a "
                f"variable, the mask's mean needs all). Received: cautious={cautious!r}"
            )
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            bias_corrected_epsilon=bias_corrected_epsilon,
            moment_dtype=moment_dtype,
            name=name,
            **kwargs,
        )

    def update_step(self, gradient, variable, learning_rate):
        # Only the TensorFlow backend hands optimizers sparse gradients (tf.IndexedSlices).
        if not (hasattr(gradient, "indices") and hasattr(gradient, "values")):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        # The base class has summed duplicate rows: each row appears once.
        rows, g = gradient.indices, ops.cast(gradient.values, dtype)
        step = local_step(self, dtype)
        learning_rate = ops.cast(learning_rate, step.dtype)
        correction_1 = bias_correction(self.hyperparameter(self.beta_1), step)
        correction_2 = bias_correction(self.hyperparameter(self.beta_2), step)
        index = self._get_variable_index(variable)

        def read_rows(slot):
            # The variable's own gather (TensorFlow's ResourceGather) reads the rows alone;
            # ``ops.take`` would first read the whole slot, and once the slot has had a
            # sparse update TensorFlow copies it on every such read: the cost of the table,
            # not of the batch.
            return ops.cast(tf.gather(tf_variable(slot), rows), dtype)

        def update_rows(slot, rows_value):
            # The rows as stored (rounded to a bfloat16 slot), for the step.
            if keras.backend.standardize_dtype(slot.dtype) == "bfloat16" and dtype == "float64":
                rows_value = ops.cast(rows_value, "float32")  # as _moments.store rounds
            rows_value = ops.cast(ops.cast(rows_value, slot.dtype), dtype)
            self.assign(slot, tf.IndexedSlices(ops.cast(rows_value, slot.dtype), rows))
            return rows_value

        m_slot, v_slot = self._momentums[index], self._velocities[index]
        m, v = read_rows(m_slot), read_rows(v_slot)
        m = update_rows(m_slot, ops.add(m, ops.multiply(ops.subtract(g, m), 1 - self.beta_1)))
        v = update_rows(v_slot, ops.add(v, ops.multiply(ops.subtract(ops.square(g), v), 1 - self.beta_2)))
        if self.amsgrad:
            v_hat_slot = self._velocity_hats[index]
            v = update_rows(v_hat_slot, ops.maximum(read_rows(v_hat_slot), v))
        delta = adam_step(
            m, v, self.epsilon, learning_rate, correction_1, correction_2, self.bias_corrected_epsilon
        )
        self.assign_sub(variable, tf.IndexedSlices(delta, rows))
