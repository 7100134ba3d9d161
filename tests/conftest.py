"""Shared test set-up.

The CPU is split into two logical devices before TensorFlow starts, so that
``MirroredStrategy`` tests have two replicas on a machine without GPUs.

Two tiers: ``python -m pytest`` leaves out the tests marked ``slow`` and ``python -m pytest -m slow``
runs exactly those (CI runs both). A test marked ``matrix`` repeats an end-to-end check for every
optimizer; the default run keeps it for ``MATRIX_REPRESENTATIVES`` and the rest is ``slow``. A test
marked ``variants("id", ...)`` repeats one check over configurations of a rule; the default run keeps
the named parameter ids and the other configurations are ``slow``.
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
def pytest_collection_modifyitems(config, items):
    unmatched = {}
    for item in items:
        variants = item.get_closest_marker("variants")
        if variants is not None:
            unmatched.setdefault(item.nodeid.split("[")[0], set(variants.args)).discard(item.callspec.id)
            if item.callspec.id not in variants.args:
                item.add_marker(pytest.mark.slow)
        marker = item.get_closest_marker("matrix")
        if marker is None:
            continue
        # ``@pytest.mark.matrix("argument")``: the argument holding the optimizer (a name or a class).
        optimizer = item.callspec.params[marker.args[0]]
        if getattr(optimizer, "__name__", optimizer) not in MATRIX_REPRESENTATIVES:
            item.add_marker(pytest.mark.slow)
    # A renamed parameter would otherwise quietly move its test out of the default run (checked
    # when whole files are collected: a single test id leaves the other variants uncollected).
    whole_files = not any("::" in argument for argument in config.args)
    if whole_files and (missing := {name: ids for name, ids in unmatched.items() if ids}):
        raise pytest.UsageError(f"variants() names parameter ids that do not exist: {missing}")


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


@pytest.fixture
def autotune_arguments(monkeypatch):
    """``tfoptim.tuning.autotune`` replaced by a stub that records its keyword arguments in the
    dict returned here and raises ``ValueError("stop before training")``: what a caller passes,
    without a search."""
    import tfoptim.tuning

    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop before training")

    monkeypatch.setattr(tfoptim.tuning, "autotune", stop)
    return seen
