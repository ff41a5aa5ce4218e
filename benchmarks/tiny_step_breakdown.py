"""Where a small model's train step goes, on the current backend.

One process, one resnet_tiny ABN, random data in memory. Windows of each
variant alternate, `--rounds` times, so the machine's slow spells hit all
alike; the median window of each is reported:

  fit         `model.fit` as `keras-amb train` runs it (keras-amb's
              train_step: eq. 5's losses, metrics, the fit loop)
  bare_step   the same model's forward, CE(attention) + CE(perception),
              backward and optimizer update, in one compiled function
              (TensorFlow: tf.function; JAX: jax.jit; torch: eager), no
              metrics, no fit loop
  forward     the forward pass alone (training mode), compiled likewise

fit - bare_step is what keras-amb's step adds; bare_step - forward is the
backward pass and the update.

    KERAS_BACKEND=tensorflow python benchmarks/tiny_step_breakdown.py
    KERAS_BACKEND=torch python benchmarks/tiny_step_breakdown.py --image-size 32 --batch-size 64
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # keras-amb's default (keras_amb/__init__.py), before any TensorFlow import here


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per window")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_amb
    from keras_amb.data.pipeline import without_autotune

    backend = keras.backend.backend()
    size, batch, k, steps = args.image_size, args.batch_size, 24, args.steps
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = rng.integers(0, k, batch).astype("int32")
    memory = without_autotune(tf.data.Dataset.from_tensors((x, y)).repeat(steps).prefetch(2))

    keras.utils.set_random_seed(0)
    model = keras_amb.AttentionBranchNetwork(num_classes=k, backbone="resnet_tiny",
                                             image_size=size)
    model.compile(keras_amb.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-4))
    model.fit(memory, epochs=1, verbose=0)
    bare_optimizer = keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=1e-4)
    bare_optimizer.build(model.trainable_variables)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    xs, ys = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)

    if backend == "tensorflow":
        @tf.function
        def bare_step(images, labels):
            with tf.GradientTape() as tape:
                out = model(images, training=True)
                loss = ce(labels, out["attention_logits"]) + ce(labels, out["logits"])
            grads = tape.gradient(loss, model.trainable_variables)
            bare_optimizer.apply(grads, model.trainable_variables)
            return loss

        forward = tf.function(lambda images: model(images, training=True)["logits"])
    elif backend == "torch":
        import torch

        def bare_step(images, labels):
            model.zero_grad(set_to_none=True)
            out = model(images, training=True)
            loss = ce(labels, out["attention_logits"]) + ce(labels, out["logits"])
            loss.backward()
            variables = model.trainable_variables
            with torch.no_grad():
                bare_optimizer.apply([v.value.grad for v in variables], variables)
            return loss

        def forward(images):
            with torch.no_grad():
                return model(images, training=True)["logits"]
    else:
        import jax

        trainable = model.trainable_variables
        others = model.non_trainable_variables
        opt_vars = bare_optimizer.variables

        def loss_fn(tv, ntv, images, labels):
            out, ntv = model.stateless_call(tv, ntv, images, training=True)
            loss = ce(labels, out["attention_logits"]) + ce(labels, out["logits"])
            return loss, ntv

        @jax.jit
        def jax_step(tv, ntv, ov, images, labels):
            (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, images, labels)
            tv, ov = bare_optimizer.stateless_apply(ov, grads, tv)
            return loss, tv, ntv, ov

        state = {}

        def read_state():  # fit donates the variables' buffers: read them anew
            state.update(tv=[v.value for v in trainable], ntv=[v.value for v in others],
                         ov=[v.value for v in opt_vars])

        def bare_step(images, labels):
            loss, state["tv"], state["ntv"], state["ov"] = jax_step(
                state["tv"], state["ntv"], state["ov"], images, labels)
            return loss

        jax_forward = jax.jit(lambda tv, ntv, images: model.stateless_call(
            tv, ntv, images, training=True)[0]["logits"])

        def forward(images):
            tv = [v.value for v in trainable]
            return jax_forward(tv, [v.value for v in others], images)

    def run_fit():
        model.fit(memory, epochs=1, verbose=0)

    def run_bare():
        if backend == "jax":
            read_state()
        for _ in range(steps):
            loss = bare_step(xs, ys)
        keras.ops.convert_to_numpy(loss)

    def run_forward():
        for _ in range(steps):
            out = forward(xs)
        keras.ops.convert_to_numpy(out)

    variants = {"fit": run_fit, "bare_step": run_bare, "forward": run_forward}
    for run in variants.values():
        run()  # warm-up (tracing, compiling)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / steps)
    print(f"backend {backend}, resnet_tiny ABN, {size} px, batch {batch}; "
          f"{args.rounds} alternating windows of {steps} steps, median")
    median = {name: statistics.median(t) for name, t in times.items()}
    print("| variant | ms per step | img/s | window spread |")
    print("|---|---|---|---|")
    for name, t in times.items():
        spread = (max(t) - min(t)) / median[name]
        print(f"| {name} | {1000 * median[name]:.1f} | {batch / median[name]:.0f} | {spread:.0%} |")
    print(f"keras-amb's step over the bare step: {median['fit'] / median['bare_step']:.2f}x "
          f"({1000 * (median['fit'] - median['bare_step']):+.1f} ms); backward + update: "
          f"{1000 * (median['bare_step'] - median['forward']):.1f} ms")


if __name__ == "__main__":
    main()
