"""``resnet``: ResNet-20 on scikit-learn's digits upscaled to 32 x 32, with augmentation.

**Model**: the CIFAR ResNet of He et al., "Deep Residual Learning for Image Recognition" (CVPR
2016, section 4.2) with ``n`` basic blocks per stage (``n = 3``: ResNet-20): a 3 x 3 convolution
to 16 channels, three stages of ``n`` blocks at 16, 32 and 64 channels (the first block of the
second and third stage halves the resolution), global average pooling and a dense layer to 10
classes. A block is ``relu(x + BN(conv(relu(BN(conv(x))))))``; convolutions have no bias
(BatchNorm follows). Deliberate difference: where the shape changes, the shortcut is a 1 x 1
convolution with BatchNorm (the paper's option B) rather than zero padding (option A, used for
its CIFAR results). ResNet-20 has about 0.27 M parameters in 65 trainable variables.

**Data**: the 1,797 digits of ``sklearn.datasets.load_digits`` (8 x 8, 17 grey levels), pixels
scaled to [0, 1] and resized bilinearly to 32 x 32, split 75/25 stratified as the convergence
benchmark's digits problems are (:func:`tfoptim.benchmarks.problems.digits_split`). Training
batches pass through Keras preprocessing layers: a random translation of up to 10% of each side,
a rotation of up to 0.05 turns (18 degrees) and a zoom of up to 10%, filled with zeros
(the background), seeded by the run's seed. They run in the ``tf.data`` pipeline, not in the
model, because TensorFlow's image transform has no XLA kernel (the model compiles with
``jit_compile=True``).

**Metric**: validation accuracy.

**Without BatchNorm** (``resnet_nobn``, :data:`WORKLOAD_NO_BN`, not among the default
workloads: named with ``--workloads``): the same network and data with every BatchNorm
removed, for normalizer-free training (adaptive gradient clipping is its use case). Without BN
the residual branches of a deep network add up and the signal grows with depth; the model uses
SkipInit (De & Smith, "Batch Normalization Biases Residual Blocks Towards the Identity
Function in Deep Networks", NeurIPS 2020): each residual branch ends in a learnable scalar
gain initialised to 0 (:class:`SkipGain`), so every block starts as the identity (the network
as a whole starts as the stem, the shortcut convolutions and the classifier), and the
convolutions have biases, which BN's shift provided. A block is
``relu(x + g * conv(relu(conv(x))))``; the shortcut where the shape changes is a 1 x 1
convolution. Deliberate difference from NFNets (Brock et al., ICML 2021): no scaled weight
standardisation and no fixed variance-preserving scaling, only the zero-initialised gain (the
part they share with SkipInit).
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from tfoptim.benchmarks.workloads import Data, Size, Workload

IMAGE_SIZE = 32
CLASSES = 10
BN_MOMENTUM = 0.9


def _digits_32():
    import tensorflow as tf

    from tfoptim.benchmarks.problems import digits_split

    x_train, x_test, y_train, y_test = digits_split()

    def resize(x):
        images = tf.image.resize(x.reshape(-1, 8, 8, 1), (IMAGE_SIZE, IMAGE_SIZE), method="bilinear")
        return images.numpy().astype(np.float32)

    return resize(x_train), y_train.astype(np.int32), resize(x_test), y_test.astype(np.int32)


def augmentation(seed):
    """The training batches' random translation, rotation and zoom, drawn from ``seed``."""
    layers = keras.layers
    return keras.Sequential([
        layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        layers.RandomRotation(0.05, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 2),
    ], name="augmentation")


def make_data(seed, batch_size, train_examples=None, validation_examples=None):
    """The digits at 32 x 32; ``train_examples`` / ``validation_examples`` keep the first ones of
    a seeded order (training) or of the fixed split (validation). Both are cut to whole batches."""
    x_train, y_train, x_val, y_val = _digits_32()
    order = np.random.default_rng(seed).permutation(len(y_train))[:train_examples]
    x_train, y_train = x_train[order], y_train[order]
    x_val, y_val = x_val[:validation_examples], y_val[:validation_examples]
    whole = lambda n: n // batch_size * batch_size  # noqa: E731
    augment = augmentation(seed)
    return Data(
        x_train[: whole(len(y_train))], y_train[: whole(len(y_train))],
        x_val[: whole(len(y_val))], y_val[: whole(len(y_val))], batch_size, seed,
        augment=lambda x: augment(x, training=True),
        info={"image_size": IMAGE_SIZE, "train_examples": len(y_train), "validation_examples": len(y_val)},
    )


@keras.saving.register_keras_serializable(package="tfoptim.benchmarks")
class SkipGain(keras.layers.Layer):
    """``g * x`` with one learnable scalar ``g`` initialised to 0 (SkipInit's residual gain)."""

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(), initializer="zeros", name="gain")

    def call(self, x):
        return x * ops.cast(self.gain, x.dtype)


def make_model(blocks, width=16, batch_norm=True):
    """ResNet-(6 ``blocks`` + 2) with stages of ``width``, ``2 width`` and ``4 width`` channels;
    ``batch_norm=False``: without BatchNorm, with SkipInit's zero-initialised residual gains
    and biased convolutions (see the module's docstring)."""
    layers = keras.layers

    def conv(filters, kernel, strides, name):
        return layers.Conv2D(filters, kernel, strides, padding="same", use_bias=not batch_norm,
                             kernel_initializer="he_normal", name=name)

    def bn(name):
        if not batch_norm:
            return lambda x: x
        # PyTorch's default rate for the moving statistics: Keras's 0.99 lags a network that
        # changes quickly, and validation in inference mode then judges stale statistics.
        return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    x = conv(width, 3, 1, "stem_conv")(inputs)
    x = layers.ReLU()(bn("stem_bn")(x))
    for stage in range(3):
        filters = width * 2**stage
        for block in range(blocks):
            name = f"stage{stage}_block{block}"
            strides = 2 if stage > 0 and block == 0 else 1
            h = conv(filters, 3, strides, f"{name}_conv1")(x)
            h = layers.ReLU()(bn(f"{name}_bn1")(h))
            h = bn(f"{name}_bn2")(conv(filters, 3, 1, f"{name}_conv2")(h))
            if not batch_norm:
                h = SkipGain(name=f"{name}_gain")(h)
            if strides != 1:
                x = bn(f"{name}_shortcut_bn")(conv(filters, 1, strides, f"{name}_shortcut")(x))
            x = layers.ReLU()(layers.Add()([x, h]))
    x = layers.GlobalAveragePooling2D()(x)
    name = f"resnet{6 * blocks + 2}" + ("" if batch_norm else "_nobn")
    return keras.Model(inputs, layers.Dense(CLASSES, name="classifier")(x), name=name)


WORKLOAD = Workload(
    name="resnet",
    description="ResNet-20 (3 stages x 3 basic blocks, BatchNorm) on scikit-learn's digits upscaled to "
    "32x32 with random translation, rotation and zoom; metric: validation accuracy",
    metric="val_accuracy",
    goal="max",
    sizes={
        "full": Size(model=dict(blocks=3), data=dict(batch_size=64), target=0.99, steps=105),
        "sweep": Size(model=dict(blocks=1, width=8), data=dict(batch_size=64), target=0.82, steps=105),
        "quick": Size(model=dict(blocks=3), data=dict(batch_size=16, train_examples=64, validation_examples=32)),
    },
    make_model=make_model,
    make_data=make_data,
    make_loss=lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    make_metrics=lambda: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
)

WORKLOAD_NO_BN = dataclasses.replace(
    WORKLOAD,
    name="resnet_nobn",
    description="ResNet-20 without BatchNorm (SkipInit: a zero-initialised scalar gain ends each residual "
    "branch; biased convolutions) on scikit-learn's digits upscaled to 32x32 with random translation, "
    "rotation and zoom; metric: validation accuracy",
    # The same budgets; no stated targets (those are what the model with BatchNorm reached).
    sizes={name: dataclasses.replace(size, model={**size.model, "batch_norm": False}, target=None)
           for name, size in WORKLOAD.sizes.items()},
)
