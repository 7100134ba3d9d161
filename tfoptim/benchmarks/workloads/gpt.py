"""``gpt``: a decoder-only transformer on English text that ships with Python, byte by byte.

**Model** (GPT-2's layout, Radford et al. 2019): learned token and position embeddings, then
``layers`` pre-LayerNorm blocks, each ``x + attention(LN(x))`` (causal multi-head
self-attention, ``keras.layers.MultiHeadAttention`` with ``use_causal_mask=True``) and
``x + MLP(LN(x))`` (``Dense(4 * width, gelu)`` then ``Dense(width)``), a final LayerNorm and a
linear head to the 256 byte values. Deliberate differences from GPT-2: the attention
projections have no biases (12 variables a block instead of 16), the head is not tied to the
token embedding, and there is no dropout (the runs are short, the comparison is between
optimizers). The full size, 6 blocks x 256 wide with 4 heads and a context of 128 bytes, has
about 4.9 M parameters in 77 variables.

**Data**: the documents are the help topics of ``pydoc_data.topics`` (one document each) and,
for every ``.py`` file of the standard library in sorted path order (test suites and
``site-packages`` left out), the docstrings that :func:`ast.get_docstring` finds in it (module,
classes, functions) as one document; a docstring seen earlier in that order is dropped, so
boilerplate such as ``"Return repr(self)."`` cannot sit in both splits. Each document is
UTF-8 followed by a zero byte (its end). A document goes to validation when a hash of its name
salted with :data:`DEFINITION_SEED` falls in the lowest :data:`VALIDATION_FRACTION`; the split
is the same in every run. The text is the running Python's, so it changes a little between
Python versions (``data.info["python"]`` records which).

Each split is one byte stream cut into windows of ``context + 1`` bytes that overlap by one
(input the first ``context``, target the last ``context``). Training windows start at an
offset in ``[0, context)`` drawn from the run's seed; validation windows start at 0.

**Metric**: validation bits per byte, the mean cross-entropy of the next byte over every
position of every validation window, divided by ln 2 (positions early in a window see less
context, as in any fixed-window evaluation).
"""

import ast
import functools
import hashlib
import math
import os
import sys
import sysconfig

import keras
import numpy as np

from tfoptim.benchmarks.workloads import DEFINITION_SEED, Data, Size, Workload

VOCABULARY = 256
#: Share of the documents (by the hash of their names) held out for validation.
VALIDATION_FRACTION = 0.1
#: Directories of the standard library whose files are code, not prose, or not the standard library.
SKIPPED_DIRECTORIES = frozenset({"test", "tests", "site-packages", "dist-packages", "__pycache__"})
END_OF_DOCUMENT = b"\x00"


def _stdlib_files():
    root = sysconfig.get_paths()["stdlib"]
    found = []
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if d not in SKIPPED_DIRECTORIES]
        found += [os.path.join(directory, n) for n in names if n.endswith(".py")]
    return root, sorted(found)


def _docstrings(source):
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a file written for another Python version
        return []
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [doc for node in ast.walk(tree) if isinstance(node, nodes) and (doc := ast.get_docstring(node))]


@functools.lru_cache(maxsize=1)
def documents():
    """``((name, text), ...)``: the pydoc topics, then one document per standard-library file.

    Built once per process: parsing the standard library is most of the cost of the data."""
    from pydoc_data.topics import topics

    found = [(f"pydoc:{key}", topics[key]) for key in sorted(topics)]
    seen = set()
    root, files = _stdlib_files()
    for path in files:
        with open(path, "rb") as file:
            kept = []
            for doc in _docstrings(file.read()):
                if doc not in seen:
                    seen.add(doc)
                    kept.append(doc)
        if kept:
            found.append((f"stdlib:{os.path.relpath(path, root)}", "\n\n".join(kept)))
    return tuple(found)


def in_validation(name):
    """Whether the document ``name`` is in the validation split (a salted hash, fixed per name)."""
    digest = hashlib.blake2b(f"{DEFINITION_SEED}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") < VALIDATION_FRACTION * 2**64


@functools.lru_cache(maxsize=1)
def streams():
    """``(train, validation)``: each split's documents as one ``uint8`` stream."""
    split = {False: [], True: []}
    for name, text in documents():
        split[in_validation(name)].append(text.encode("utf-8") + END_OF_DOCUMENT)
    return tuple(np.frombuffer(b"".join(split[v]), np.uint8) for v in (False, True))


def windows(stream, context, offset=0):
    """Every window of ``context + 1`` bytes from ``offset`` on, overlapping by one: ``(n, context + 1)``."""
    count = (len(stream) - offset - 1) // context
    starts = offset + context * np.arange(count)
    return stream[starts[:, None] + np.arange(context + 1)]


def make_data(seed, context, batch_size, train_windows=None, validation_windows=None):
    """Training windows from a seeded offset, in a seeded order (the first ``train_windows`` of
    that order when given); validation windows from offset 0, ``validation_windows`` of them
    evenly spaced through the stream when given. Both are cut to whole batches."""
    rng = np.random.default_rng(seed)
    train_stream, validation_stream = streams()
    train = windows(train_stream, context, offset=int(rng.integers(context)))
    train = train[rng.permutation(len(train))[:train_windows]]
    validation = windows(validation_stream, context)
    if validation_windows is not None:
        validation = validation[np.linspace(0, len(validation) - 1, validation_windows).astype(int)]
    train, validation = (w[: len(w) // batch_size * batch_size].astype(np.int32) for w in (train, validation))
    info = {
        "python": sys.version.split()[0],
        "documents": len(documents()),
        "train_bytes": len(train_stream),
        "validation_bytes": len(validation_stream),
    }
    return Data(train[:, :-1], train[:, 1:], validation[:, :-1], validation[:, 1:], batch_size, seed, info=info)


class PositionEmbedding(keras.layers.Layer):
    """Adds a learned vector per position (GPT-2's ``wpe``) to a ``(batch, time, width)`` input."""

    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.length, input_shape[-1]), initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embeddings",
        )

    def call(self, inputs):
        return inputs + keras.ops.cast(self.embeddings[: keras.ops.shape(inputs)[1]], inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "length": self.length}


def make_model(layers, width, heads, context):
    layer = keras.layers
    # GPT-2's initialisation: N(0, 0.02) everywhere.
    init = keras.initializers.RandomNormal(stddev=0.02)
    tokens = keras.Input((context,), dtype="int32", name="bytes")
    x = layer.Embedding(VOCABULARY, width, embeddings_initializer=init, name="token_embedding")(tokens)
    x = PositionEmbedding(context, name="position_embedding")(x)
    for i in range(layers):
        h = layer.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln1")(x)
        h = layer.MultiHeadAttention(
            heads, width // heads, use_bias=False, kernel_initializer=init, name=f"block{i}_attention"
        )(h, h, use_causal_mask=True)
        x = layer.Add()([x, h])
        h = layer.LayerNormalization(epsilon=1e-5, name=f"block{i}_ln2")(x)
        h = layer.Dense(4 * width, activation="gelu", kernel_initializer=init, name=f"block{i}_mlp_in")(h)
        h = layer.Dense(width, kernel_initializer=init, name=f"block{i}_mlp_out")(h)
        x = layer.Add()([x, h])
    x = layer.LayerNormalization(epsilon=1e-5, name="final_ln")(x)
    logits = layer.Dense(VOCABULARY, use_bias=False, kernel_initializer=init, name="head")(x)
    return keras.Model(tokens, logits, name="gpt")


def bits_per_byte(y_true, logits):
    """Cross-entropy of each next byte in bits (nats / ln 2)."""
    return keras.losses.sparse_categorical_crossentropy(y_true, logits, from_logits=True) / math.log(2.0)


def make_metrics():
    return [keras.metrics.MeanMetricWrapper(bits_per_byte, name="bits_per_byte")]


WORKLOAD = Workload(
    name="gpt",
    description="decoder-only transformer (pre-LayerNorm, causal attention, GELU MLP), byte-level, on "
    "Python's help topics and standard-library docstrings; metric: validation bits per byte",
    metric="val_bits_per_byte",
    goal="min",
    sizes={
        "full": Size(
            model=dict(layers=6, width=256, heads=4, context=128),
            data=dict(context=128, batch_size=32, validation_windows=512),
            target=4.69,
            steps=100,
        ),
        "sweep": Size(
            model=dict(layers=2, width=128, heads=4, context=64),
            data=dict(context=64, batch_size=16, validation_windows=256),
            target=4.32,
            steps=100,
        ),
        "quick": Size(
            model=dict(layers=6, width=256, heads=4, context=128),
            data=dict(context=128, batch_size=4, train_windows=8, validation_windows=4),
        ),
    },
    make_model=make_model,
    make_data=make_data,
    make_loss=lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    make_metrics=make_metrics,
)
