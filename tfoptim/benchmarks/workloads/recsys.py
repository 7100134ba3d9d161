"""``recsys``: a two-tower recommender with a million-row item embedding, on planted preferences.

**Data**: ``users`` users (1,000) and ``items`` items (1,000,000; 100,000 at the sweep size,
where a dense optimizer's step over a million rows would cost most of the sweep). Each interaction draws a user
uniformly and an item from a Zipf law of exponent :data:`ZIPF_EXPONENT` over the items'
popularity ranks (``P(rank k) ~ k**-1.1``, truncated at ``items``), ranks mapped to item ids by
a fixed random permutation so popularity is not the id order. The label is a click drawn from
a planted low-rank preference: user and item factors ``p_u, q_i ~ N(0, I)`` of rank
:data:`PLANTED_RANK` and ``P(click) = sigmoid(PLANTED_SCALE * <p_u, q_i> / sqrt(rank) +
PLANTED_BIAS)``, so the label noise is the logistic noise of that Bernoulli draw. The factors
are fixed by :data:`DEFINITION_SEED`; the run's seed draws the training interactions, the
validation interactions are the same in every run. ``data.info`` reports the validation
log-loss and AUC of the planted probabilities themselves: what a model that recovered the
preference exactly would score, the floor no model can beat on average.

**Model**: two towers over embedding lookups (:class:`RowEmbedding`), a user table ``(users,
width)`` and an item table ``(items, width)``, 1,000,000 x 32 at the full and quick sizes, each
followed by ``Dense(hidden, relu)`` and ``Dense(width)``; the logit is a dense layer over the
towers' element-wise product (a weighted dot product plus a bias). On TensorFlow an embedding
lookup's gradient is a ``tf.IndexedSlices`` over the rows in the batch, so optimizers with a
sparse path (``LazyAdam``) can touch only those rows, while Keras's Adam updates the whole
table every step.

**Metric**: validation log-loss (binary cross-entropy); ``auc`` is reported next to it
(``keras.metrics.AUC``: a 200-threshold approximation).
"""

import functools

import keras
import numpy as np

from tfoptim.benchmarks.workloads import DEFINITION_SEED, Data, Size, Workload

ITEMS = 1_000_000
USERS = 1_000
ZIPF_EXPONENT = 1.1
PLANTED_RANK = 4
#: The planted logit's scale and offset: strong enough preferences to learn, clicks in the minority.
PLANTED_SCALE = 3.0
PLANTED_BIAS = -1.0


@functools.lru_cache(maxsize=2)
def planted(users, items):
    """``(user_factors, item_factors, rank_to_item)``, fixed by :data:`DEFINITION_SEED`."""
    rng = np.random.default_rng([DEFINITION_SEED, users, items])
    user_factors = rng.standard_normal((users, PLANTED_RANK), dtype=np.float32)
    item_factors = rng.standard_normal((items, PLANTED_RANK), dtype=np.float32)
    return user_factors, item_factors, rng.permutation(items).astype(np.int32)


@functools.lru_cache(maxsize=2)
def _zipf_cdf(items):
    weights = np.arange(1, items + 1, dtype=np.float64) ** -ZIPF_EXPONENT
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def interactions(rng, count, users, items):
    """``count`` draws of ``({"user", "item"}, click, P(click))`` from the planted model."""
    user_factors, item_factors, rank_to_item = planted(users, items)
    user = rng.integers(users, size=count, dtype=np.int32)
    rank = np.minimum(np.searchsorted(_zipf_cdf(items), rng.random(count)), items - 1)
    item = rank_to_item[rank]
    logit = PLANTED_SCALE * np.einsum("nr,nr->n", user_factors[user], item_factors[item]) / np.sqrt(PLANTED_RANK)
    probability = 1.0 / (1.0 + np.exp(-(logit + PLANTED_BIAS)))
    click = (rng.random(count) < probability).astype(np.float32)
    return {"user": user, "item": item}, click, probability


def log_loss(y, probability):
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def make_data(seed, batch_size, train_examples, validation_examples, users=USERS, items=ITEMS):
    """``train_examples`` interactions drawn from ``seed``, ``validation_examples`` from the
    definition's seed (the same in every run), both whole batches."""
    from sklearn.metrics import roc_auc_score

    whole = lambda n: n // batch_size * batch_size  # noqa: E731
    x_train, y_train, _ = interactions(np.random.default_rng([seed, 1]), whole(train_examples), users, items)
    validation_rng = np.random.default_rng([DEFINITION_SEED, 2])
    x_val, y_val, p_val = interactions(validation_rng, whole(validation_examples), users, items)
    info = {
        "users": users,
        "items": items,
        "distinct_train_items": int(len(np.unique(x_train["item"]))),
        "click_rate": float(y_train.mean()),
        "planted_log_loss": log_loss(y_val, p_val),
        "planted_auc": float(roc_auc_score(y_val, p_val)),
    }
    return Data(x_train, y_train, x_val, y_val, batch_size, seed, info=info)


class RowEmbedding(keras.layers.Embedding):
    """``keras.layers.Embedding`` whose lookup, on TensorFlow, reads only the rows it returns.

    Keras's lookup (``ops.take``) converts the whole table to a tensor first, and once a
    variable has had a sparse update TensorFlow copies it on every such read: 128 MB a step for
    a 1,000,000 x 32 table, which would dwarf everything a sparse optimizer saves.
    ``tf.gather`` on the variable itself is TensorFlow's ``ResourceGather`` of the rows alone. The
    gradient is the same ``tf.IndexedSlices`` either way; other backends use Keras's lookup.
    """

    def call(self, inputs):
        table = self.embeddings.value
        if keras.backend.backend() != "tensorflow" or not hasattr(table, "sparse_read"):
            return super().call(inputs)
        import tensorflow as tf

        return tf.gather(table, keras.ops.cast(inputs, "int32"))


def make_model(users=USERS, items=ITEMS, width=32, hidden=64):
    layers = keras.layers
    user = keras.Input((), dtype="int32", name="user")
    item = keras.Input((), dtype="int32", name="item")

    def tower(ids, rows, name):
        h = RowEmbedding(rows, width, name=f"{name}_embedding")(ids)
        h = layers.Dense(hidden, activation="relu", name=f"{name}_hidden")(h)
        return layers.Dense(width, name=f"{name}_out")(h)

    product = layers.Multiply()([tower(user, users, "user"), tower(item, items, "item")])
    logit = layers.Reshape(())(layers.Dense(1, name="score")(product))
    return keras.Model({"user": user, "item": item}, logit, name="two_tower")


WORKLOAD = Workload(
    name="recsys",
    description=f"two-tower recommender with a {ITEMS:,} x 32 item embedding (sparse gradients), Zipf({ZIPF_EXPONENT}) "
    "items, clicks from a planted low-rank preference; metric: validation log-loss (and AUC)",
    metric="val_log_loss",
    goal="min",
    sizes={
        "full": Size(
            model=dict(), data=dict(batch_size=1024, train_examples=1_048_576, validation_examples=65_536),
            target=0.66, steps=128,
        ),
        "sweep": Size(
            model=dict(items=100_000),
            data=dict(items=100_000, batch_size=1024, train_examples=262_144, validation_examples=32_768),
            target=0.63,
            steps=128,
        ),
        "quick": Size(model=dict(), data=dict(batch_size=1024, train_examples=2048, validation_examples=2048)),
    },
    make_model=make_model,
    make_data=make_data,
    make_loss=lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    make_metrics=lambda: [
        keras.metrics.BinaryCrossentropy(from_logits=True, name="log_loss"),
        keras.metrics.AUC(from_logits=True, name="auc"),
    ],
)
