import keras
from keras import ops

from tfoptim._validation import check_steps
from tfoptim.optimizers._wrapper import OptimizerWrapper


@keras.saving.register_keras_serializable(package="tfoptim")
class SWA(OptimizerWrapper):
    """Stochastic Weight Averaging: any optimizer, plus an equal-weight average of its iterates.

    The inner optimizer trains the model's weights as usual; after the steps with 0-based index
    ``s = start_averaging, start_averaging + average_period, ...`` (``s`` is the inner
    optimizer's ``iterations`` before the step) the weights join a running mean::

        n       = (s - start_averaging) // average_period        (snapshots so far)
        average <- average + (theta - average) / (n + 1)

    The model keeps training from its own weights; the average is what to evaluate and
    deploy. :meth:`evaluation_values` returns it (the current weights until the first
    snapshot), and :class:`tfoptim.callbacks.EvaluationWeights` swaps it in around validation
    and saving and leaves it in the model at the end of training; :meth:`assign_average_vars`
    copies it in directly. Batch normalisation statistics then no longer match the weights:
    recompute them with :func:`tfoptim.callbacks.update_batch_norm` (the paper's extra pass).

    The successor of ``tfa.optimizers.SWA`` (same arguments and snapshot steps). TF Addons
    computed ``(average * n + theta) / (n + 1)`` with ``n`` in float32 (it fails on float64
    variables); the incremental form above is ``torch.optim.swa_utils.AveragedModel``'s, and
    the snapshot count comes from ``iterations``, so no counter is stored. A cyclical or
    constant "SWA" learning rate is the inner optimizer's schedule.

    Reference: Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging Weights Leads to
    Wider Optima and Better Generalization" (UAI 2018).

    Args:
        optimizer: the inner optimizer: any ``keras.optimizers.Optimizer`` (built-in or
            tfoptim), or its name.
        start_averaging: index of the first step averaged, counted from 0 (integer >= 0): the
            first snapshot follows the ``start_averaging + 1``-th step. Defaults to 0.
        average_period: steps between snapshots (integer >= 1). Defaults to 10.
        name: defaults to "swa".
    """

    def __init__(self, optimizer, start_averaging=0, average_period=10, name=None, **kwargs):
        super().__init__(optimizer, name=name, **kwargs)
        self.start_averaging = check_steps("start_averaging", start_averaging)
        self.average_period = check_steps("average_period", average_period, 1)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._averages = self.add_optimizer_variables(variables, "average")

    def _step_index(self):
        """``s``, the 0-based index of the step just applied by the inner optimizer."""
        return ops.subtract(self.iterations, 1)

    def _after_step(self, variables):
        self._update_each(self._snapshot_due, self._snapshot, variables)

    def _snapshot_due(self):
        # With the inner optimizer's gradient accumulation, `iterations` stays put over the
        # micro-steps that follow an update: only the update's call takes the snapshot.
        offset = ops.subtract(self._step_index(), self.start_averaging)
        due = ops.logical_and(ops.greater_equal(offset, 0), ops.equal(ops.mod(offset, self.average_period), 0))
        return ops.logical_and(due, self._updates(after=True))

    def _snapshot(self, variable):
        average = self._slot(self._averages, variable)
        snapshots = ops.floor_divide(ops.subtract(self._step_index(), self.start_averaging),
                                     self.average_period)
        share = ops.divide(1, ops.cast(snapshots + 1, average.dtype))
        self.assign_add(average, ops.multiply(ops.subtract(variable, average), share))

    def evaluation_values(self, variables):
        """The averages of ``variables``, or their current values before the first snapshot."""
        # Values, not variables: JAX's jnp.where no longer takes a Keras variable.
        started = ops.greater(ops.convert_to_tensor(self.iterations), self.start_averaging)
        return [
            ops.where(started, ops.convert_to_tensor(self._slot(self._averages, v)), ops.convert_to_tensor(v))
            for v in variables
        ]

    def assign_average_vars(self, var_list):
        """Copies the averages into ``var_list`` (TF Addons' method of the same name; before the
        first snapshot the variables keep their values)."""
        for variable, value in zip(var_list, self.evaluation_values(var_list)):
            variable.assign(value)

    def get_config(self):
        return self._config(start_averaging=self.start_averaging, average_period=self.average_period)
