"""What XLA takes to compile the small programs JAX makes for eager operations.

Each eager JAX operation on a new shape compiles its own XLA program; the
test suite makes hundreds (model building, optimizers applied eagerly,
eager forward passes). This times 300 of them (`x * 2.0 + 1.0` over 150
shapes) in this process, under whatever XLA_FLAGS it was started with:

    XLA_FLAGS="--xla_backend_optimization_level=0 --xla_cpu_multi_thread_eigen=false" \\
        python benchmarks/xla_small_compiles.py
    XLA_FLAGS="... --xla_cpu_use_fusion_emitters=false" python benchmarks/xla_small_compiles.py
"""

import time

import jax.numpy as jnp

arrays = [jnp.ones((rows + 1, 3)) for rows in range(150)]
start = time.time()
for x in arrays:
    (x * 2.0 + 1.0).block_until_ready()
print(f"{time.time() - start:.2f} s for 300 small compiles")
