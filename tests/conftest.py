"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow starts, so that
``MirroredStrategy`` tests have two replicas on a machine without GPUs.

Two tiers: ``python -m pytest`` leaves out the tests marked ``slow`` and ``python -m pytest -m slow``
runs exactly those (CI runs both). A test marked ``matrix`` repeats an end-to-end check for every
optimizer; the default run keeps it for ``MATRIX_REPRESENTATIVES`` and the rest is ``slow``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


#: The optimizers a ``matrix`` test runs on by default: an adaptive rule on the fast path (Adam),
#: momentum SGD, a wrapper stepping an inner optimizer (Lookahead), and a rule whose step size is
#: one scalar estimated from all the variables (Prodigy: a reduction that a strategy must get right).
MATRIX_REPRESENTATIVES = {"Adam", "SGD", "Lookahead", "Prodigy"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("matrix")
        if marker is None:
            continue
        # ``@pytest.mark.matrix("argument")``: the argument holding the optimizer (a name or a class).
        optimizer = item.callspec.params[marker.args[0]]
        if getattr(optimizer, "__name__", optimizer) not in MATRIX_REPRESENTATIVES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One strategy for the whole run: separate strategies each number their collective ops
    from the same start, and a float64 all-reduce reusing a float32 one's key aborts TF's
    collectives for the rest of the process. Reducing on one device avoids collectives."""
    return tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)
