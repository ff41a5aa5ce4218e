"""The dicts the model returns: what `call` and `predict` give users, and
what the attention branch alone gives (the complement step's pass)."""

from keras import ops


def attention_outputs(attention, attention_logits):
    return {
        "attention": attention[..., 0],
        "attention_logits": attention_logits,
        "attention_probabilities": ops.softmax(attention_logits),
    }


def predictions(head):
    """The outputs users see, from `forward_head`'s: the perception branch's
    logits and probabilities (the reported predictions), the attention map
    `(N, h, w)` and the attention branch's logits and probabilities."""
    outputs = attention_outputs(head["attention"], head["attention_logits"])
    outputs["logits"] = head["logits"]
    outputs["probabilities"] = ops.softmax(head["logits"])
    return outputs
