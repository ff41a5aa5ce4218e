"""`visualize`'s figures: every label readable, none over another."""

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from keras_amb.explain import visualize as explain_visualize

# Under torch, the shortest suite (the TensorFlow suite sets the time of the three).
pytestmark = pytest.mark.backend_independent("torch")


def _row(label, class_names, rng):
    crop = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    scores = np.sort(rng.dirichlet(np.ones(len(class_names))))[::-1][:5]
    top5 = list(zip(class_names, scores.tolist()))
    maps = {m: rng.uniform(0, 1, (8, 8)).astype(np.float32) for m in ("attention", "cam",
                                                                     "gradcam")}
    return (label, crop, top5, maps, class_names[0])


def _drawn_text_boxes(monkeypatch, draw):
    """Calls `draw()` and returns `(text, box)` of every text drawn when the
    figure was saved, box as (x0, y0, x1, y1) in the saved PNG's pixels.

    `Text.draw` draws nothing for an invisible or empty text (and axes that
    are off draw no tick labels); a text drawn twice (`bbox_inches="tight"`
    draws once to measure) keeps its last, saved, place.
    """
    boxes = {}
    original = Text.draw

    def record(self, renderer):
        result = original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            box = self.get_window_extent(renderer)
            boxes[id(self)] = (self.get_text(), (box.x0, box.y0, box.x1, box.y1))
        return result

    monkeypatch.setattr(Text, "draw", record)
    draw()
    return list(boxes.values())


def _overlap(a, b, tolerance=0.5):
    return (min(a[2], b[2]) - max(a[0], b[0]) > tolerance
            and min(a[3], b[3]) - max(a[1], b[1]) > tolerance)


@pytest.mark.parametrize("methods", [["attention"], ["attention", "cam", "gradcam"]])
def test_no_two_labels_overlap_with_long_names_and_compare(tmp_path, monkeypatch, methods):
    rng = np.random.default_rng(0)
    long_run = "synthetic-mining-20261201-201411-with-a-much-longer-name-than-usual-x" * 2
    classes = ["a_class_name_long_enough_to_run_into_the_next_panel_by_itself",
               "short", "yellow_headed_blackbird", "b", "c", "d"]
    rows = [_row(f"{long_run} (AMB + PC + COT, no bypass)", classes, rng),
            _row("synthetic-mining-20261201-201411 (AMB + PC + COT, no bypass)", classes, rng),
            _row(f"{long_run}/abn.keras (ABN, bypass)", classes[::-1], rng)]
    path = tmp_path / "figure.png"
    texts = _drawn_text_boxes(monkeypatch, lambda: explain_visualize.draw(
        str(path), "an_image_file_with_a_long_name_from_a_camera_IMG_20261201_201411.jpg",
        rows, methods))
    width, height = Image.open(path).size
    drawn = " ".join(" ".join(text.split()) for text, _ in texts)
    # Every row's label and every panel's title is there ...
    for needle in ("AMB + PC + COT, no bypass", "(ABN, bypass)", "top-5 (perception branch)",
                   "attention (class-agnostic)", "map colour scale", "IMG_20261201"):
        assert needle in drawn, needle
    if "cam" in methods:
        assert "Grad-CAM" in drawn
    assert len(texts) > 20
    # ... inside the saved image, and no two of them overlap.
    for text, box in texts:
        assert box[0] >= -1 and box[1] >= -1 and box[2] <= width + 1 and box[3] <= height + 1, (
            text, box, (width, height))
    for i, (text_a, a) in enumerate(texts):
        for text_b, b in texts[i + 1:]:
            assert not _overlap(a, b), (text_a, a, text_b, b)


def test_the_check_sees_an_overlap(tmp_path, monkeypatch):
    """The overlap check itself: two titles set on top of each other fail it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw():
        fig, ax = plt.subplots()
        ax.set_title("a title long enough to run into the next", loc="left")
        ax.set_title("attention (class-agnostic)")
        fig.savefig(tmp_path / "bad.png")
        plt.close(fig)

    texts = [box for text, box in _drawn_text_boxes(monkeypatch, draw)
             if "title" in text or "attention" in text]
    assert len(texts) == 2 and _overlap(*texts)
