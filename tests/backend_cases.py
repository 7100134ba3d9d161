"""The optimizer configurations run on both Keras backends (``tests/optimizers/test_jax_backend.py``).

Every rule (learning rates set for the reference problem), the flags that take another branch
of its step, the common Keras arguments, and the rules whose state starts on their first step
or changes every few steps (a branch taken only then).
Imports no backend: the JAX process and the TensorFlow test both build from it.
"""

import tfoptim.optimizers as to

CHECKPOINTS = (1, 10, 200)

CASES = {
    "gradient_descent": ("GradientDescent", dict(learning_rate=0.05)),
    "dynamic_gradient_descent": ("DynamicGradientDescent", dict(learning_rate=0.1, decay_rate=0.98)),
    "sgd_nesterov": ("SGD", dict(learning_rate=0.05, momentum=0.875, nesterov=True)),
    "sgd_torch_form": ("SGD", dict(learning_rate=0.05, momentum=0.875, dampening=0.25,
                                   momentum_buffer="gradient", coupled_weight_decay=0.01)),
    "adagrad": ("Adagrad", dict(learning_rate=0.1)),
    "adagrad_torch_form": ("Adagrad", dict(learning_rate=0.1, epsilon_inside_sqrt=False)),
    # epsilon 1e-4: near the optimum the centered v - avg**2 cancels to ~0, and with the default
    # 1e-7 under the square root its last-bit differences grow to 1e-3 by step 200.
    "rmsprop_centered": ("RMSprop", dict(learning_rate=0.01, centered=True, momentum=0.5, epsilon=1e-4)),
    "adam": ("Adam", dict(learning_rate=0.01)),
    "adam_amsgrad_clipnorm": ("Adam", dict(learning_rate=0.01, amsgrad=True, clipnorm=1.0)),
    "adam_skip_nonfinite": ("Adam", dict(learning_rate=0.01, skip_nonfinite=True)),
    "adamw": ("AdamW", dict(learning_rate=0.01, weight_decay=0.05)),
    "lazy_adam": ("LazyAdam", dict(learning_rate=0.01)),
    "lion": ("Lion", dict(learning_rate=0.001, weight_decay=0.1)),
    "radam": ("RAdam", dict(learning_rate=0.01)),
    "ada_belief": ("AdaBelief", dict(learning_rate=0.01)),
    "yogi": ("Yogi", dict(learning_rate=0.01, l1_regularization_strength=0.001,
                          l2_regularization_strength=0.01)),
    "novograd": ("NovoGrad", dict(learning_rate=0.01, grad_averaging=True, moment_weight_decay=0.01)),
    "lars": ("LARS", dict(learning_rate=0.05, momentum=0.5, lars_weight_decay=0.001)),
    "cocob": ("COCOB", dict()),
    "proximal_adagrad": ("ProximalAdagrad", dict(learning_rate=0.1, l1_regularization_strength=0.001,
                                                 l2_regularization_strength=0.01)),
    "adan": ("Adan", dict(learning_rate=0.01, weight_decay=0.02)),
    "madgrad": ("MADGRAD", dict(learning_rate=0.01, weight_decay=0.05)),
    "ademamix": ("AdEMAMix", dict(learning_rate=0.01, alpha_warmup=50, beta_3_warmup=50)),
    "adopt": ("ADOPT", dict(learning_rate=0.01)),
    "prodigy": ("Prodigy", dict(safeguard_warmup=True, use_bias_correction=True)),
    "dadapt_adam": ("DAdaptAdam", dict(use_bias_correction=True)),
    "soap": ("SOAP", dict(learning_rate=0.003, precondition_frequency=5)),
    "shampoo": ("Shampoo", dict(learning_rate=0.01, epsilon=1e-4, max_preconditioner_dim=4, precondition_frequency=3,
                                start_preconditioning_step=5, momentum=0.5, nesterov=True)),
    "muon": ("Muon", dict(learning_rate=0.02, exclude_output_head=False)),
    "muon_keras_polar_express": ("Muon", dict(learning_rate=0.01, convention="keras", ns_coefficients="polar_express",
                                              adjust_lr_fn="match_rms_adamw", weight_decay=0.004)),
    "normuon": ("NorMuon", dict(exclude_output_head=False)),
    "psgd_kron": ("PSGDKron", dict(learning_rate=0.01, weight_decay=0.01, preconditioner_update_probability=0.5)),
    "schedule_free_sgd": ("ScheduleFreeSGD", dict(learning_rate=0.1, warmup_steps=10)),
    "lookahead": ("Lookahead", dict(optimizer=("Adam", dict(learning_rate=0.01)), sync_period=5)),
    "swa": ("SWA", dict(optimizer=("SGD", dict(learning_rate=0.05, momentum=0.875)),
                        start_averaging=20, average_period=7)),
    "sam": ("SAM", dict(optimizer=("Adam", dict(learning_rate=0.01)), rho=0.1)),
    "asam": ("SAM", dict(optimizer=("SGD", dict(learning_rate=0.05, momentum=0.5)), rho=0.5, adaptive=True)),
    "schedule_free": ("ScheduleFree", dict(optimizer=("SGD", dict(learning_rate=0.1)), warmup_steps=10)),
    "gradient_centralization": ("GradientCentralization", dict(optimizer=("SGD", dict(learning_rate=0.05,
                                                                                     momentum=0.875)))),
    "adaptive_gradient_clipping": ("AdaptiveGradientClipping", dict(optimizer=("Adam", dict(learning_rate=0.01)),
                                                                    clip_factor=0.05)),
}


def make(case):
    """A fresh optimizer for ``case`` (a key of :data:`CASES`)."""
    name, kwargs = CASES[case]
    kwargs = dict(kwargs)
    if "optimizer" in kwargs:
        inner, inner_kwargs = kwargs.pop("optimizer")
        return getattr(to, name)(getattr(to, inner)(**inner_kwargs), **kwargs)
    return getattr(to, name)(**kwargs)


#: The wrappers trained by a literal ``model.fit`` on both backends (Keras's own training step:
#: ``jax.jit`` of ``stateless_apply`` on JAX, ``tf.function`` on TensorFlow).
FIT_CASES = ("sam", "asam", "lookahead", "swa", "schedule_free", "gradient_centralization",
             "adaptive_gradient_clipping")


def fit_run(optimizer):
    """``model.fit`` of a two-layer model on fixed data, 3 epochs of 6 steps, validated with the
    optimizer's evaluation weights; returns the trained weights and the validation losses.
    Keras and NumPy only: it runs on whichever backend Keras was imported with."""
    import keras
    import numpy as np

    from tfoptim.callbacks import EvaluationWeights

    rng = np.random.default_rng(7)
    x = rng.normal(size=(48, 4))
    y = np.stack([np.sin(x[:, 0] + x[:, 1]), x[:, 2] * x[:, 3]], axis=1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(2)])
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    # A sum over the outputs, not "mse": Keras's ops.mean on JAX rounds float64 through float32.
    model.compile(optimizer=optimizer, loss=lambda t, p: keras.ops.sum(keras.ops.square(t - p), axis=-1))
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, validation_data=(x[:16], y[:16]),
                        callbacks=[EvaluationWeights(final=False)], verbose=0)
    return [np.asarray(w) for w in model.get_weights()], np.asarray(history.history["val_loss"])
