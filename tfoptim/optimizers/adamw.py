import keras

from tfoptim.optimizers.adam import Adam


@keras.saving.register_keras_serializable(package="tfoptim")
class AdamW(Adam):
    """Adam with decoupled weight decay.

    Before each Adam update (see :class:`Adam`) the weights shrink in proportion to the
    learning rate, independently of the adaptive scaling::

        theta <- theta - alpha * weight_decay * theta

    which is Keras's ``weight_decay`` argument with a non-zero default. Equals
    ``keras.optimizers.AdamW`` and ``torch.optim.AdamW`` (with ``bias_corrected_epsilon=True``).

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).

    Args:
        learning_rate: float >= 0, ``LearningRateSchedule`` or callable. Defaults to 0.001.
        weight_decay: decoupled decay coefficient, >= 0. Defaults to 0.004.
        beta_1, beta_2, epsilon, amsgrad, bias_corrected_epsilon, cautious, moment_dtype: as
            in :class:`Adam`.
        **kwargs: see :class:`tfoptim.optimizers.base.Optimizer`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
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
        if weight_decay is None:
            raise ValueError("`weight_decay` of AdamW must be a float >= 0. Received: None")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            bias_corrected_epsilon=bias_corrected_epsilon,
            cautious=cautious,
            moment_dtype=moment_dtype,
            name=name,
            weight_decay=weight_decay,
            **kwargs,
        )
