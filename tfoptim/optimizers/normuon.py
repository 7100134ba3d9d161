import keras
from keras import ops

from tfoptim._validation import check_unit_interval
from tfoptim.optimizers._moments import update_moment
from tfoptim.optimizers.muon import Muon, _path

#: The reference code's guard against dividing by zero, in both divisions.
_TINY = 1e-10


@keras.saving.register_keras_serializable(package="tfoptim")
class NorMuon(Muon):
    """NorMuon: Muon with each output neuron's update normalised by its running RMS.

    Every matrix variable is stepped as :class:`Muon` steps it (same matrix view
    ``(fan_in, fan_out)``, momentum, Newton-Schulz iteration, weight decay, learning-rate
    adjustment, AdamW fallback for the other variables), with one more stage between the
    iteration and the step: the update is normalised per output neuron by a running second
    moment, then rescaled to its norm before. With ``O`` the orthogonalised update and
    ``v`` one value per output neuron (a column of a Keras kernel, a row of PyTorch's
    weight), starting at 0::

        v     <- beta_2 * v + (1 - beta_2) * mean_i(O[i, j]**2)     (per output neuron j)
        O'    <- O[i, j] / (sqrt(v[j]) + 1e-10)
        O''   <- O' * ||O||_F / (||O'||_F + 1e-10)                  (Frobenius norms)
        theta <- theta - alpha * f(A, B) * O''

    Orthogonalisation gives every direction the same size, but not every neuron: the rows of
    PyTorch's ``U V^T`` (the columns here) can differ widely in norm. Dividing each by its
    running RMS evens them out, as Adam does per coordinate; the rescaling keeps Muon's
    step size, so Muon's learning rates carry over.

    Reference: Li et al., "NorMuon: Making Muon more efficient and scalable"
    (arXiv:2510.05491, 2025); the authors' code, ``normuon.py`` of
    https://github.com/zichongli5/NorMuon (commit e5aaaf4): ``SingleDeviceNorMuonWithAuxAdam``,
    whose defaults are these (``lr=0.02``, ``momentum=0.95``, ``beta2=0.95``,
    ``weight_decay=0``; the auxiliary Adam at ``lr=3e-4``, that is ``adam_lr_ratio=0.015``,
    ``betas=(0.9, 0.95)``, ``eps=1e-10``, epsilon added to the bias-corrected ``sqrt(v)``).
    It builds on Keller Jordan's ``muon.py``, hence ``convention="keller"``: torch's momentum,
    epsilon added to the norm. Recorded float64 trajectories of that code, with its bfloat16
    cast removed and run on the 2-D views of the kernels, are followed to 1e-12
    (``tests/fixtures/record_muon.py``).

    Deliberate differences from the reference code:

    * precision: it runs the iteration, and so the normalisation, in bfloat16; tfoptim runs
      the iteration in ``ns_dtype`` (default the variable's, float32 at least) and the
      normalisation in the variable's dtype, float32 at least;
    * convolution kernels: the reference flattens a 4-D kernel for the iteration only, then
      takes the second moment over the kernel's last axis (``kw``: one value per
      ``(out, in, kh)``), rescales each ``(kh, kw)`` slice by its own norm ratio, and adjusts
      the rate by ``sqrt(max(1, kh / kw))``; tfoptim normalises the flattened matrix, per
      output channel, and adjusts by its shape, as for any matrix (the paper's rule, stated
      for matrices);
    * the reference steps every parameter it is given; the AdamW fallback and its routing
      are Muon's.

    State: the momentum and ``fan_out`` second-moment values per matrix variable (the
    momentum and velocity of Adam per fallback variable).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.02.
        weight_decay: decoupled, >= 0. Defaults to 0.0.
        beta_2: decay of the per-neuron second moment, in [0, 1). Defaults to 0.95.
        convention: as in :class:`Muon`. Defaults to ``"keller"`` (the reference's).
        adam_lr_ratio, adam_beta_2, epsilon: as in :class:`Muon`; defaults 0.015, 0.95 and
            1e-10 (the reference's auxiliary Adam).
        **kwargs: the other arguments of :class:`Muon`, with its defaults, and those of
            :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=0.02,
        weight_decay=0.0,
        beta_2=0.95,
        convention="keller",
        adam_lr_ratio=0.015,
        adam_beta_2=0.95,
        epsilon=1e-10,
        name=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            convention=convention,
            adam_lr_ratio=adam_lr_ratio,
            adam_beta_2=adam_beta_2,
            epsilon=epsilon,
            name=name,
            **kwargs,
        )
        self.beta_2 = check_unit_interval("beta_2", beta_2)

    def build(self, variables):
        if self.built:
            return
        self._second_moments = []
        super().build(variables)

    def _build_matrix_state(self, variable, matrix):
        if matrix is None:
            self._second_moments.append(None)
            return
        prefix = _path(variable).replace("/", "_")
        self._second_moments.append(
            self.add_variable((matrix[1],), dtype=variable.dtype, name=f"{prefix}_second_moment")
        )

    def _scale_update(self, update, index):
        v = self._second_moments[index]
        squares = ops.square(update)
        norm = ops.sqrt(ops.sum(squares))
        # A sum over the fan-in, divided: Keras's mean on JAX loses float64 precision (~1e-8).
        mean = ops.divide(ops.sum(squares, axis=0), update.shape[0])
        update_moment(self, v, ops.cast(mean, v.dtype), self.beta_2)
        scale = ops.divide(1.0, ops.add(ops.sqrt(ops.cast(v, update.dtype)), _TINY))
        normalised = ops.multiply(update, scale)
        ratio = ops.divide(norm, ops.add(ops.sqrt(ops.sum(ops.square(normalised))), _TINY))
        return ops.multiply(normalised, ratio)
