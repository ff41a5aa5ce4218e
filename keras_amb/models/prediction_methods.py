"""What a user calls on a trained model besides `predict`: its class
names, `decode_predictions`, and `explain` (class, probabilities and maps of
raw images, with the model's own preprocessing)."""

import numpy as np
from keras import ops


class PredictionMethods:
    """Mixin of `AttentionBranchNetwork`: the methods users call to read a
    trained model's answers. It reads `class_names` and `num_classes`.

    Example:
    >>> model = AttentionBranchNetwork(num_classes=4, backbone="resnet_tiny",
    ...                                image_size=32)
    >>> [e] = model.explain(np.zeros((40, 50, 3), "uint8"))
    >>> sorted(e.maps), e.maps["attention"].shape
    (['attention', 'cam', 'gradcam'], (8, 8))
    """

    def get_class_names(self):
        """The class names, or `class_0 ... class_{K-1}` when none were given."""
        if self.class_names is not None:
            return list(self.class_names)
        return [f"class_{i}" for i in range(self.num_classes)]

    def decode_predictions(self, probabilities, top_k=5):
        """The top-k `(class name, probability)` pairs of each row.

        Args:
            probabilities: `(N, K)` array, e.g. `model.predict(x)["probabilities"]`.
            top_k: int, how many classes per row.

        Returns:
            A list (one per row) of lists of `(name, probability)`, most
            likely first.
        """
        probabilities = np.asarray(ops.convert_to_numpy(probabilities), dtype=np.float64)
        if probabilities.ndim != 2 or probabilities.shape[1] != self.num_classes:
            raise ValueError(
                f"`probabilities` must have shape (N, {self.num_classes}). "
                f"Received: shape={probabilities.shape}"
            )
        k = max(1, min(int(top_k), self.num_classes))
        names = self.get_class_names()
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[(names[j], float(row[j])) for j in top] for row, top in zip(probabilities, order)]

    def explain(self, images, methods=("attention", "cam", "gradcam"), top_k=5,
                batch_size=32):
        """The class, the probabilities and the maps of raw images.

        Each image (a file path or an RGB array of any size) is
        preprocessed as the model was trained (`keras_amb.predict`), then
        classified and explained by each of `methods`: the model's own
        attention map, CAM of the predicted class (the perception branch's
        last stage) and its Grad-CAM (at F, the attention map's input),
        both min-max normalised.

        Args:
            images: a path, an `(H, W, 3)` array in `[0, 255]`, or a list.
            methods: a sequence of `"attention"`, `"cam"`, `"gradcam"`.
            top_k: int, classes per image.
            batch_size: int, images per forward pass.

        Returns:
            A list of `keras_amb.inference.Prediction`s, one per image:
            `label`, `top_k`, `probabilities`, `attention` and `maps`
            (method name to `(h, w)` map); an unreadable file has `error`.
        """
        from keras_amb import inference

        return inference.predict(self, images, top_k=top_k, batch_size=batch_size,
                                 methods=methods)
