"""Gradient transforms: wrappers that change the gradient, then hand it to any optimizer.

Each takes the optimizer it feeds and composes with any other wrapper, the outer one first:
``AdaptiveGradientClipping(GradientCentralization(keras.optimizers.SGD(0.1)))`` clips, then
centralizes, then steps. Unit-wise means per output unit: in Keras's layout (``Dense``
kernels ``(in, out)``, convolution kernels ``(..., in, out)``) a unit is a slice along the last
axis, and its statistics reduce over all the other axes (PyTorch's layout puts the outputs
first, so pytorch_optimizer reduces over all axes but the first; optax, written for the same
layout as Keras, over all but the last).

A transform sees the whole gradient: under ``tf.distribute`` a nonlinear one (clipping) sums
the replicas' gradients first and hands each replica its share of the result, so the inner
optimizer's all-reduce gives it back whole. With the inner optimizer's
``gradient_accumulation_steps``, each micro-batch's gradient is transformed before it is
accumulated (as ``optax.MultiSteps`` around ``optax.chain(transform, ...)`` would not:
there the average is transformed); for the linear gradient centralization that is the same.
"""

import math

import keras
from keras import ops

from tfoptim._validation import check_bool, check_non_negative, check_positive
from tfoptim.optimizers._wrapper import OptimizerWrapper
from tfoptim.optimizers.graph import dense


def _all_but_last(x):
    return tuple(range(len(x.shape) - 1))


class GradientTransform(OptimizerWrapper):
    """Hands ``transform(gradient, variable)`` to the inner optimizer in place of the gradient."""

    counts_iterations = False
    #: True for a transform linear in the gradient: applied to each replica's share, the
    #: shares still add up to the transform of the whole, so no extra all-reduce is needed.
    linear = False

    @property
    def steps_every_call(self):
        # It steps its inner optimizer on every call, so counts calls as that one does: a
        # transform around SAM is refused inside Lookahead, SWA and ScheduleFree as SAM is.
        return getattr(self.inner_optimizer, "steps_every_call", True)

    def apply(self, grads, trainable_variables=None):
        if len(grads) == 0:
            return
        trainable_variables = self._built_for(trainable_variables)
        with keras.name_scope(self.name, caller=self):
            if self.linear:
                grads, replicas = [None if g is None else dense(g) for g in grads], 1
            else:
                grads, replicas = self._global_gradients(grads)
            grads = [
                None if g is None else self.transform(ops.cast(g, v.dtype), ops.convert_to_tensor(v))
                for g, v in zip(grads, trainable_variables)
            ]
            if replicas > 1:
                grads = [None if g is None else ops.divide(g, replicas) for g in grads]
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                # Inside a cond branch (SAM's descent) a gradient passed on unchanged (a bias's)
                # is still a tensor of the enclosing graph, and Keras's all-reduce in the inner
                # step (a custom_gradient) refuses outputs from two graphs.
                grads = [None if g is None else tf.identity(g) for g in grads]
        self.inner_optimizer.apply(grads, trainable_variables)

    def transform(self, gradient, value):
        """The gradient handed on, given the gradient (dense, in the variable's dtype) and the
        variable's value."""
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="tfoptim")
class GradientCentralization(GradientTransform):
    """Gradient centralization: each output unit's gradient minus its mean, then any optimizer.

    For every variable with more than one axis (more than three with ``conv_only``), per unit
    ``j`` of the last axis::

        g[..., j] <- g[..., j] - mean(g[..., j])

    The weight vector of each unit then moves on the hyperplane its gradient's mean is zero
    on, which the paper shows regularises both weights and output features. Biases and other
    vectors are left as they are.

    Checked against ``pytorch_optimizer.centralize_gradient`` (its ``gc_conv_only`` is
    ``conv_only``) applied before a ``torch.optim`` step, in PyTorch's layout; optax's
    ``centralize`` reduces over all axes but the first, which in Keras's layout are the inputs,
    not the outputs: here the paper's (and PyTorch's) units are kept. Linear in the gradient.

    Reference: Yong, Huang, Hua & Zhang, "Gradient Centralization: A New Optimization Technique
    for Deep Neural Networks" (ECCV 2020).

    Args:
        optimizer: the optimizer that steps with the centralized gradient: any
            ``keras.optimizers.Optimizer`` (built-in or tfoptim), or its name.
        conv_only: centralize convolution kernels only (variables with four or more axes).
            Defaults to False.
        name: defaults to "gradient_centralization".
    """

    linear = True

    def __init__(self, optimizer, conv_only=False, name=None, **kwargs):
        super().__init__(optimizer, name=name, **kwargs)
        self.conv_only = check_bool("conv_only", conv_only)

    def transform(self, gradient, value):
        if len(gradient.shape) <= (3 if self.conv_only else 1):
            return gradient
        # A sum over the count, not ops.mean: Keras's mean on JAX rounds float64 through float32.
        axes = _all_but_last(gradient)
        count = math.prod(gradient.shape[a] for a in axes)
        mean = ops.divide(ops.sum(gradient, axis=axes, keepdims=True), ops.convert_to_tensor(count, gradient.dtype))
        return ops.subtract(gradient, mean)

    def get_config(self):
        return self._config(conv_only=self.conv_only)


#: A unit's gradient norm is at least this in the clipping ratio (pytorch_optimizer's ``eps``,
#: optax's and NFNets' constant): a zero gradient is never divided by zero.
GRADIENT_NORM_FLOOR = 1e-6


def unitwise_norm(x):
    """The L2 norm of each output unit of ``x`` (the whole norm for a scalar or vector), with
    the reduced axes kept, as NFNets' ``unitwise_norm`` in Keras's layout."""
    if len(x.shape) <= 1:
        return ops.sqrt(ops.sum(ops.square(x)))
    return ops.sqrt(ops.sum(ops.square(x), axis=_all_but_last(x), keepdims=True))


@keras.saving.register_keras_serializable(package="tfoptim")
class AdaptiveGradientClipping(GradientTransform):
    """Adaptive gradient clipping (AGC), unit-wise as NFNets use it, then any optimizer.

    Each output unit's gradient is clipped to a fraction of the unit's weight norm::

        max_norm = clip_factor * max(||w_unit||, eps)
        g_unit  <- g_unit * max_norm / max(||g_unit||, 1e-6)    where ||g_unit|| > max_norm

    Units are slices along the last axis (Keras's output axis) for variables with two or more
    axes; a scalar or vector (a bias, a normalisation scale) is one unit. Brock et al. leave
    the final classifier layer unclipped: wrap that layer's variables' optimizer without AGC
    (e.g. in ``keras.optimizers.MultiOptimizer``) to follow them.

    Checked against ``pytorch_optimizer.agc`` (before a ``torch.optim`` step, in PyTorch's
    layout) and optax's ``adaptive_grad_clip``: the same formula. pytorch_optimizer reduces a
    three-axis tensor over its second axis only; here, as in optax and NFNets, a
    one-dimensional convolution kernel ``(width, in, out)`` reduces over width and inputs.

    Reference: Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition
    Without Normalization" (ICML 2021).

    Args:
        optimizer: the optimizer that steps with the clipped gradient: any
            ``keras.optimizers.Optimizer`` (built-in or tfoptim), or its name.
        clip_factor: the largest gradient-to-weight norm ratio per unit (> 0). Defaults to
            0.01 (NFNets use 0.01 to 0.16, smaller for larger batches).
        eps: the smallest weight norm (>= 0), so zero-initialised units can move. Defaults
            to 1e-3.
        name: defaults to "adaptive_gradient_clipping".
    """

    def __init__(self, optimizer, clip_factor=0.01, eps=1e-3, name=None, **kwargs):
        super().__init__(optimizer, name=name, **kwargs)
        self.clip_factor = check_positive("clip_factor", clip_factor)
        self.eps = check_non_negative("eps", eps)

    def transform(self, gradient, value):
        dtype = gradient.dtype
        max_norm = ops.multiply(ops.maximum(unitwise_norm(value), ops.convert_to_tensor(self.eps, dtype)),
                                ops.convert_to_tensor(self.clip_factor, dtype))
        grad_norm = ops.maximum(unitwise_norm(gradient), ops.convert_to_tensor(GRADIENT_NORM_FLOOR, dtype))
        clipped = ops.multiply(gradient, ops.divide(max_norm, grad_norm))
        return ops.where(ops.greater(grad_norm, max_norm), clipped, gradient)

    def get_config(self):
        return self._config(clip_factor=self.clip_factor, eps=self.eps)
