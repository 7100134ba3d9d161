"""The workloads of ``tfoptim.benchmarks.workloads``: data, shapes, gradients and a few steps of training.

Model sizes are checked against parameter counts written out from each architecture's layer
shapes; the data against properties it must have (determinism, a split by document, Zipf
frequencies, planted labels). Nothing here times anything.
"""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfoptim import cli
from tfoptim.benchmarks.workloads import SIZES, get_workload, gpt, recsys, workloads


def _arrays(data):
    """Every array of a Data, dicts flattened, in a fixed order."""
    out = []
    for x in (data.x_train, data.y_train, data.x_validation, data.y_validation):
        out += [x[k] for k in sorted(x)] if isinstance(x, dict) else [x]
    return out


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(_arrays(a), _arrays(b)))


# ---------------------------------------------------------------------------------------------
# The public API


def test_every_workload_has_every_size_budgets_and_targets():
    assert list(workloads()) == ["gpt", "resnet", "recsys"]
    for workload in workloads().values():
        assert tuple(workload.sizes) == SIZES and workload.goal in ("min", "max")
        assert workload.metric.startswith("val_")
        # The realistic suite's budgets; the quick size takes the suite's own short ones.
        for size in ("full", "sweep"):
            assert workload.sizes[size].steps > 0
        assert workload.sizes["quick"].steps is None
        # Stated where the suite has a budget; the quick size takes its baseline's final.
        assert workload.sizes["quick"].target is None and workload.reached(1.0, "quick") is None
        for size in ("full", "sweep"):
            target = workload.sizes[size].target
            assert isinstance(target, float)
            better, worse = (target - 0.01, target + 0.01) if workload.goal == "min" else (target + 0.01, target - 0.01)
            assert workload.reached(target, size) and workload.reached(better, size)
            assert not workload.reached(worse, size)


def test_unknown_names_and_sizes_are_rejected():
    with pytest.raises(ValueError, match="`name` must be one of"):
        get_workload("bert")
    with pytest.raises(ValueError, match="`size` must be one of"):
        get_workload("gpt").data("tiny")


# ---------------------------------------------------------------------------------------------
# Data


@pytest.mark.variants("resnet", "recsys")
@pytest.mark.parametrize("name", ["gpt", "resnet", "recsys"])
def test_data_is_a_function_of_the_seed(name):
    """Same seed, same arrays; another seed reorders (or redraws) the training data only: the
    validation set is the workload's definition, the same in every run."""
    size = "sweep" if name == "gpt" else "quick"
    workload = get_workload(name)
    first, again, other = workload.data(size, 0), workload.data(size, 0), workload.data(size, 1)
    assert _same(first, again)
    assert not np.array_equal(first.y_train, other.y_train)
    for a, b in zip(_arrays(first)[-2:], _arrays(other)[-2:]):
        np.testing.assert_array_equal(a, b)
    assert len(first.y_train) % first.batch_size == 0 and len(first.y_validation) % first.batch_size == 0


def test_gpt_documents_are_split_whole_and_disjoint():
    documents = gpt.documents()
    train, validation = gpt.streams()
    names = [name for name, _ in documents]
    assert len(set(names)) == len(names)
    assert any(n.startswith("pydoc:") for n in names) and any(n.startswith("stdlib:") for n in names)
    # Every document lands whole in exactly one split: its text is in its own stream and,
    # for texts long enough not to recur by chance, not in the other.
    held_out = [gpt.in_validation(name) for name in names]
    assert 0.05 < np.mean(held_out) < 0.15
    streams = {False: train.tobytes(), True: validation.tobytes()}
    for (name, text), in_validation in zip(documents, held_out):
        encoded = text.encode("utf-8") + gpt.END_OF_DOCUMENT
        assert encoded in streams[in_validation], name
        if len(encoded) > 200:
            assert encoded not in streams[not in_validation], name
    assert len(train) + len(validation) == sum(len(t.encode("utf-8")) + 1 for _, t in documents)
    # The sizes: ~0.47 MB of help topics and ~1.7 MB of docstrings.
    assert 1.8e6 < len(train) + len(validation) < 2.8e6
    assert 0.05 < len(validation) / (len(train) + len(validation)) < 0.15


def test_gpt_windows_predict_the_next_byte():
    data = gpt.WORKLOAD.data("sweep", 0)
    context = gpt.WORKLOAD.sizes["sweep"].data["context"]
    for x, y in ((data.x_train, data.y_train), (data.x_validation, data.y_validation)):
        assert x.shape == y.shape and x.shape[1] == context and x.dtype == np.int32
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        assert 0 <= x.min() and x.max() < gpt.VOCABULARY
    # Validation windows are consecutive slices of the validation stream.
    _, validation = gpt.streams()
    np.testing.assert_array_equal(gpt.windows(validation, context)[:, :-1][0], validation[:context])


def test_resnet_images_and_augmentation():
    workload = get_workload("resnet")
    data = workload.data("quick", 0)
    assert data.x_train.shape[1:] == (32, 32, 1) and data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_train)) <= set(range(10))
    # Upscaling keeps each 8x8 digit's mean brightness (bilinear interpolation, edges clamped).
    from tfoptim.benchmarks.problems import digits_split

    x_train8 = digits_split()[0]
    order = np.random.default_rng(0).permutation(len(x_train8))[: len(data.y_train)]
    np.testing.assert_allclose(data.x_train.mean(axis=(1, 2, 3)), x_train8[order].mean(axis=1), atol=0.03)

    def first_batch(seed):
        return next(iter(workload.data("quick", seed).train()))[0].numpy()

    augmented, again, other = first_batch(0), first_batch(0), first_batch(1)
    np.testing.assert_array_equal(augmented, again)
    assert not np.array_equal(augmented, other)
    # The transform moves pixels but keeps the batch a batch of images in [0, 1].
    assert augmented.shape == (data.batch_size, 32, 32, 1) and augmented.min() >= 0 and augmented.max() <= 1.0 + 1e-6


def test_recsys_items_follow_zipf_and_labels_the_planted_preference():
    workload = get_workload("recsys")
    data = workload.data("sweep", 0)
    items = workload.sizes["sweep"].data["items"]
    item, user = data.x_train["item"], data.x_train["user"]
    assert 0 <= item.min() and item.max() < items and 0 <= user.min() and user.max() < recsys.USERS
    # The k-th most frequent item's share against the truncated Zipf law k^-s / H(items, s).
    counts = np.sort(np.bincount(item, minlength=items))[::-1]
    harmonic = np.sum(np.arange(1, items + 1, dtype=float) ** -recsys.ZIPF_EXPONENT)
    for k in (1, 2, 10):
        expected = k**-recsys.ZIPF_EXPONENT / harmonic
        assert counts[k - 1] / len(item) == pytest.approx(expected, rel=0.1), k
    # Popularity is not the id order.
    assert np.argmax(np.bincount(item)) != 0
    # Labels carry the planted preference: its probabilities rank them far better than chance,
    # and clicks are the minority.
    assert data.info["planted_auc"] > 0.85 and data.info["planted_log_loss"] < 0.5
    assert 0.2 < data.y_train.mean() < 0.5
    user_factors, item_factors, _ = recsys.planted(recsys.USERS, items)
    logit = np.einsum("nr,nr->n", user_factors[user], item_factors[item])
    assert np.corrcoef(logit, data.y_train)[0, 1] > 0.3


# ---------------------------------------------------------------------------------------------
# Models


def _gpt_parameters(layers, width, context, vocabulary=256):
    block = 2 * width + 4 * width * width + 2 * width + (width * 4 * width + 4 * width) + (4 * width * width + width)
    return vocabulary * width + context * width + layers * block + 2 * width + width * vocabulary


def _resnet_parameters(blocks, width=16, classes=10):
    def conv_bn(c_in, c_out, k):
        return k * k * c_in * c_out + 2 * c_out

    total = conv_bn(1, width, 3)
    c_in = width
    for stage in range(3):
        c = width * 2**stage
        for block in range(blocks):
            total += conv_bn(c_in, c, 3) + conv_bn(c, c, 3) + (conv_bn(c_in, c, 1) if c_in != c else 0)
            c_in = c
    return total + c_in * classes + classes


def _recsys_parameters(users, items, width=32, hidden=64):
    tower = width * hidden + hidden + hidden * width + width
    return (users + items) * width + 2 * tower + width + 1


@pytest.mark.parametrize("name, size, parameters, variables", [
    ("gpt", "full", _gpt_parameters(6, 256, 128), 77),
    ("gpt", "quick", _gpt_parameters(6, 256, 128), 77),
    ("gpt", "sweep", _gpt_parameters(2, 128, 64), 29),
    ("resnet", "full", _resnet_parameters(3), 65),
    ("resnet", "quick", _resnet_parameters(3), 65),
    ("resnet", "sweep", _resnet_parameters(1, 8), 29),
    ("recsys", "full", _recsys_parameters(recsys.USERS, 1_000_000), 12),
    ("recsys", "quick", _recsys_parameters(recsys.USERS, 1_000_000), 12),
    ("recsys", "sweep", _recsys_parameters(recsys.USERS, 100_000), 12),
])
def test_model_sizes(name, size, parameters, variables):
    model = get_workload(name).build_model(size, seed=0)
    assert sum(math.prod(v.shape) for v in model.trainable_variables) == parameters
    assert len(model.trainable_variables) == variables


def test_stated_sizes():
    """The issue's figures: GPT ~5 M parameters and ~70 variables, ResNet-20 ~0.27 M and ~65,
    recsys a 1,000,000 x 32 item table."""
    assert 4.5e6 < _gpt_parameters(6, 256, 128) < 5.5e6
    assert 0.25e6 < _resnet_parameters(3) < 0.29e6
    model = get_workload("recsys").build_model("quick", seed=0)
    assert tuple(model.get_layer("item_embedding").embeddings.shape) == (1_000_000, 32)


def test_build_model_is_seeded():
    workload = get_workload("resnet")
    a, b, c = (workload.build_model("sweep", seed) for seed in (0, 0, 1))
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_gpt_attention_is_causal():
    """Changing a later byte leaves every earlier position's logits unchanged."""
    model = get_workload("gpt").build_model("sweep", seed=0)
    context = model.input_shape[1]
    x = np.random.default_rng(0).integers(0, 256, (1, context)).astype(np.int32)
    changed = x.copy()
    changed[0, 40] = (x[0, 40] + 1) % 256
    a, b = model(x).numpy(), model(changed).numpy()
    np.testing.assert_array_equal(a[0, :40], b[0, :40])
    assert not np.allclose(a[0, 40:], b[0, 40:])


def test_recsys_item_gradient_is_sparse_rows_of_the_batch():
    workload = get_workload("recsys")
    model = workload.build_model("sweep", seed=0)
    data = workload.data("sweep", 0)
    x = {k: v[:256] for k, v in data.x_train.items()}
    table = model.get_layer("item_embedding").embeddings
    # The row lookup returns the table's rows, as Keras's Embedding does.
    np.testing.assert_array_equal(model.get_layer("item_embedding")(x["item"]).numpy(), table.numpy()[x["item"]])
    with tf.GradientTape() as tape:
        loss = workload.loss()(data.y_train[:256], model(x, training=True))
    gradients = dict(zip((v.path for v in model.trainable_variables), tape.gradient(loss, model.trainable_variables)))
    item_gradient = gradients[table.path]
    assert isinstance(item_gradient, tf.IndexedSlices)
    assert set(np.unique(item_gradient.indices.numpy())) == set(np.unique(x["item"]))
    user_table = model.get_layer("user_embedding").embeddings.path
    assert isinstance(gradients[user_table], tf.IndexedSlices)
    assert all(isinstance(g, tf.Tensor) for path, g in gradients.items() if path not in (table.path, user_table))


# ---------------------------------------------------------------------------------------------
# Training


@pytest.mark.variants("recsys-LazyAdam-0.03-4")
@pytest.mark.parametrize("name, optimizer, learning_rate, steps", [
    ("gpt", "Adam", 1e-3, 3), ("resnet", "Adam", 1e-3, 3),
    # The towers start near a zero product: it takes a larger rate and a step more to fit a batch.
    ("recsys", "LazyAdam", 3e-2, 4),
])
def test_quick_size_learns_with_a_tfoptim_optimizer(name, optimizer, learning_rate, steps):
    """A few steps on one quick batch lower its loss (eager steps: tracing costs more here)."""
    import tfoptim.optimizers as to

    workload = get_workload(name)
    data = workload.data("quick", 0)
    model = workload.build_model("quick", seed=0)
    model.compile(optimizer=getattr(to, optimizer)(learning_rate), loss=workload.loss(), run_eagerly=True)
    x, y = next(iter(data.train()))
    losses = [float(model.train_on_batch(x, y)) for _ in range(steps)]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses


def test_evaluate_reports_the_metric():
    workload = get_workload("recsys")
    data = workload.data("quick", 0)
    model = workload.compile(workload.build_model("quick", seed=0), keras.optimizers.Adam())
    figures = workload.evaluate(model, data)
    assert workload.metric in figures and "val_auc" in figures
    # An untrained model: the log-loss of a near-constant prediction of 1/2, ln 2.
    assert figures["val_log_loss"] == pytest.approx(math.log(2), abs=0.05)


@pytest.mark.slow
def test_bench_speed_e2e_writes_rows(tmp_path, capsys):
    cli.main(["bench", "speed", "--e2e", "--quick", "--rounds", "1", "--no-fit", "--optimizers", "LazyAdam",
              "--workloads", "recsys", "--modes", "graph", "--output", str(tmp_path)])
    payload = json.loads((tmp_path / "speed.json").read_text())
    assert payload["results"] == [] and payload["fit"] == []
    (row,) = payload["e2e"]
    assert (row["optimizer"], row["workload"], row["size"], row["mode"]) == ("LazyAdam", "recsys", "quick", "graph")
    assert row["steps"] == 2 and row["variables"] == 12 and row["ratio"] > 0 and row["keras_s_per_epoch"] > 0
    assert "model.fit on the workloads" in capsys.readouterr().out
    assert payload["command"].startswith("tfoptim bench speed --e2e") and payload["utc"].endswith("Z")
    assert payload["machine"]["keras"] and payload["machine"]["tensorflow"]


def test_timed_epochs_read_the_same_batches_without_tf_data_autotuning():
    from tfoptim.benchmarks.speed import timing_batches

    data = get_workload("resnet").data("quick", 0)
    batches = timing_batches(data, 2)
    # Autotuning's background loop makes fit's return wait for its sleep: off for timing.
    assert batches.options().autotune.enabled is False
    first, again = ([x.numpy() for x, _ in batches] for _ in range(2))
    assert len(first) == 2
    for a, b in zip(first, again):  # the cached batches, not a reshuffled or re-augmented epoch
        np.testing.assert_array_equal(a, b)


def test_e2e_jobs_pair_lazy_adam_with_recsys_only():
    from tfoptim.benchmarks import speed

    jobs = speed.e2e_jobs(list(speed.twins()), ["gpt", "recsys"], ["graph", "xla"])
    assert ("LazyAdam", "recsys", "xla") in jobs and not any(o == "LazyAdam" and w == "gpt" for o, w, _ in jobs)
    assert len(jobs) == 2 * 2 + 3 * 2


def test_e2e_workload_names_need_the_flag():
    with pytest.raises(SystemExit, match="add --e2e"):
        cli.main(["bench", "speed", "--workloads", "gpt", "--no-fit"])
