"""Which force drives the attention map: the norm of each loss term's
gradient on the map's weights (`history.csv`'s `map_grad_<term>`, logged by
`callbacks.MapGradientNorms`), taken by the training step's own adapters."""

import keras

from keras_amb.models import compiled
from keras_amb.models import train_steps

_BACKEND = keras.backend.backend()


def term_gradient_norms(model, data, variables):
    """The norm of the gradient that each weighted loss term sends to
    `variables` (e.g. the attention map's weights), on one batch.

    The terms are those each step minimizes (`StepLoss.terms`): eq. 5's for
    the main step, COT's (or L_am's) for the complement step; the training
    step's adapter takes the gradients. Forward passes run in training mode
    without touching batch-norm moving statistics. On JAX the whole is one
    compiled program per model (run eagerly, JAX compiled each of the few
    hundred operations on first use: 10-12 s of a tiny CLI training).

    Returns:
        A dict, term name to a float.
    """
    steps = ("main",) + (("complement",) if model.has_complement_step else ())

    def norms(model, data):
        # On JAX inside `compiled`'s stateless scope: the weights' values
        # the adapter reads are the compiled program's inputs.
        steps_adapter = train_steps.adapter(model, data)
        result = {}
        for step in steps:
            result.update(steps_adapter.term_norms(step, variables))
        return result

    if _BACKEND == "jax":
        import numpy as np

        program = compiled.compiled(model, "term_gradient_norms", norms, key=variables)
        data = keras.tree.map_structure(lambda a: None if a is None else np.asarray(a), data)
        values = program(data)
    else:
        values = norms(model, data)
    return {name: float(value) for name, value in values.items()}
