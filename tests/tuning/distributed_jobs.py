"""The processes of the distributed tests (run as ``python distributed_jobs.py ROLE ...``).

- ``search DIR LOG [KILL_AT]``: a KerasTuner random search of 4 trials in ``DIR`` (chief or
  worker, as ``KERASTUNER_*`` say); each trial the process runs appends
  ``"<tuner id> <trial id>"`` to ``LOG``. With ``KILL_AT``, the process kills itself
  (SIGKILL) in the middle of its ``KILL_AT``-th trial.
- ``autotune DIR LOG``: ``tfoptim.tuning.autotune`` on a budget of 8 trials in ``DIR``, each
  trial logged as in ``search``.
- ``mwms OUT NAMES``: trains a small model with each optimizer named (comma-separated) under
  ``MultiWorkerMirroredStrategy`` (``TF_CONFIG`` says the cluster) and saves the weights.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

SEARCH_TRIALS = 4
GLOBAL_BATCH = 16
STEPS = 4


def search(directory, log, kill_at=None):
    import keras
    import keras_tuner as kt

    from tfoptim.tuning import OptimizerHyperModel
    from tfoptim.tuning.cli import digits_split

    x, _, y, _ = digits_split(0)
    x, y = x[:128], y[:128]

    def build_model(hp):
        return keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                 keras.layers.Dense(10)])

    hypermodel = OptimizerHyperModel(
        build_model, batch_sizes=(32, 64),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    tuner = kt.RandomSearch(hypermodel, objective="loss", max_trials=SEARCH_TRIALS, seed=0,
                            directory=directory, project_name="search")
    run_trial = tuner.run_trial
    started = []

    def logged_run_trial(trial, *args, **kwargs):
        started.append(trial.trial_id)
        with open(log, "a") as f:
            f.write(f"{os.environ.get('KERASTUNER_TUNER_ID', 'single')} {trial.trial_id}\n")
        if kill_at is not None and len(started) == kill_at:
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), _Kill()]
        return run_trial(trial, *args, **kwargs)

    tuner.run_trial = logged_run_trial
    tuner.search(x, y, epochs=1, verbose=0)


def autotune(directory, log):
    import importlib

    import keras

    from tfoptim.tuning.cli import digits_split

    module = importlib.import_module("tfoptim.tuning.autotune")
    x, _, y, _ = digits_split(0)
    x, y = x[:128], y[:128]

    def build():
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    run_trial = module._Tuner.run_trial

    def logged_run_trial(self, trial, *args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.environ.get('KERASTUNER_TUNER_ID', 'single')} {trial.trial_id}\n")
        return run_trial(self, trial, *args, **kwargs)

    module._Tuner.run_trial = logged_run_trial
    # 4 steps per epoch; the 8-step range test is 2 epochs, leaving 18: the suggested rate for
    # 3 epochs, constant and decaying, then the bracket of 3 one-epoch trials and the best of
    # them for 3 epochs, then the refinement's 2 runs of 3 epochs (half of the 12 left).
    module.autotune(build, x, y, budget_epochs=20, max_epochs=3, objective="loss",
                    optimizers=("adam",), finder_steps=8, directory=directory,
                    project_name="search", seed=0, verbose=0)


def _Kill():
    import keras

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            os.kill(os.getpid(), signal.SIGKILL)

    return Kill()


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((GLOBAL_BATCH * STEPS, 10)).astype(np.float32)
    y = rng.integers(0, 3, GLOBAL_BATCH * STEPS).astype(np.int32)
    return x, y


def initial_weights():
    rng = np.random.default_rng(1)
    return [rng.standard_normal(s) * 0.3 for s in ((10, 8), (8,), (8, 3), (3,))]


def train(name, strategy=None):
    """Weights after ``STEPS`` steps with the global batch ``GLOBAL_BATCH``: the usual custom
    loop of ``tf.distribute`` (``strategy.run``, the loss averaged over the global batch).

    Keras 3.15's ``model.fit`` cannot start under a multi-worker strategy (its symbolic build
    reduces a ``PerReplica`` batch eagerly and fails), hence the loop. In float64, so that
    what is compared is the distributed update itself, not the order in which float32 sums
    half-batch gradients (see the contract test's MirroredStrategy case).
    """
    import keras
    import tensorflow as tf

    from tfoptim.tuning import space

    strategy = strategy or tf.distribute.get_strategy()
    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x.astype("float64"), y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(dataset.with_options(options))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
    with strategy.scope():
        model = keras.Sequential([keras.Input((10,), dtype="float64"),
                                  keras.layers.Dense(8, activation="tanh", dtype="float64"),
                                  keras.layers.Dense(3, dtype="float64")])
        model.set_weights(initial_weights())
        optimizer = space.resolve(name).build(learning_rate=0.05)
        optimizer.build(model.trainable_variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            per_example = loss(y, model(x, training=True))
            mean = tf.nn.compute_average_loss(per_example, global_batch_size=GLOBAL_BATCH)
        gradients = tape.gradient(mean, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))

    @tf.function
    def step(batch):
        strategy.run(replica_step, args=batch)

    for batch in batches:
        step(batch)
    return [np.asarray(w) for w in model.get_weights()]


def mwms(out, names):
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    results = {}
    for name in names:
        for i, weight in enumerate(train(name, strategy)):
            results[f"{name}:{i}"] = weight
    np.savez(out, **results)


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    if role == "search":
        search(rest[0], rest[1], int(rest[2]) if len(rest) > 2 else None)
    elif role == "autotune":
        autotune(rest[0], rest[1])
    elif role == "mwms":
        mwms(rest[0], rest[1].split(","))
    else:
        raise SystemExit(f"unknown role {role!r}")
