import keras
from keras import ops

from tfoptim._validation import check_range, check_steps
from tfoptim.optimizers._wrapper import OptimizerWrapper


@keras.saving.register_keras_serializable(package="tfoptim")
class Lookahead(OptimizerWrapper):
    """Lookahead: k steps forward with any optimizer, then one step back towards slow weights.

    The inner optimizer moves the model's ("fast") weights as usual. Every ``sync_period``
    steps the slow weights move part of the way towards them, and the fast weights restart
    from there::

        after inner step t, when t % sync_period == 0:
            slow  <- slow + slow_step_size * (theta - slow)
            theta <- slow

    The slow weights start at the model's weights at the first step. ``t`` is the
    inner optimizer's ``iterations``, which this wrapper shares (as TF Addons' Lookahead did);
    the learning rate is the inner optimizer's too (``optimizer.learning_rate`` reads and sets
    it, so schedules and learning-rate callbacks work unchanged).

    The successor of ``tfa.optimizers.Lookahead`` (same arguments, same trajectory: synced
    after steps k, 2k, ..., as in the paper's Algorithm 1). ``torch_optimizer.Lookahead``
    differs: it syncs after steps 1, k + 1, 2k + 1, ... and starts the slow weights after the
    first step. For evaluation, :meth:`evaluation_values` gives the slow weights (the fast
    weights are a look ahead of them), for :class:`tfoptim.callbacks.EvaluationWeights`.

    Reference: Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back"
    (NeurIPS 2019).

    Args:
        optimizer: the inner optimizer: any ``keras.optimizers.Optimizer`` (built-in or
            tfoptim), or its name.
        sync_period: k, inner steps between synchronisations (integer >= 1). Defaults to 6.
        slow_step_size: alpha, in (0, 1]. Defaults to 0.5.
        name: defaults to "lookahead".
    """

    def __init__(self, optimizer, sync_period=6, slow_step_size=0.5, name=None, **kwargs):
        super().__init__(optimizer, name=name, **kwargs)
        self.sync_period = check_steps("sync_period", sync_period, 1)
        self.slow_step_size = check_range("slow_step_size", slow_step_size, 0.0, 1.0, low_open=True)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._slow = self.add_optimizer_variables(variables, "slow")

    def _before_step(self, variables):
        # The slow weights start at the weights of the first step. Not in build: without a
        # strategy Keras builds while tracing the first step, where an assign would become
        # part of every step.
        self._update_each(lambda: ops.equal(self.iterations, 0), self._start, variables)

    def _start(self, variable):
        self.assign(self._slot(self._slow, variable), variable)

    def _after_step(self, variables):
        self._update_each(lambda: ops.equal(ops.mod(self.iterations, self.sync_period), 0),
                          self._sync, variables)

    def _sync(self, variable):
        slow = self._slot(self._slow, variable)
        step_back = ops.add(slow, ops.multiply(ops.subtract(variable, slow), self.slow_step_size))
        self.assign(slow, step_back)
        self.assign(variable, step_back)

    def evaluation_values(self, variables):
        """The slow weights of ``variables``."""
        return [ops.convert_to_tensor(self._slot(self._slow, v)) for v in variables]

    def get_config(self):
        return self._config(sync_period=self.sync_period, slow_step_size=self.slow_step_size)
