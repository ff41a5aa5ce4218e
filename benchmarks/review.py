"""How long `keras-amb review` takes to show its gallery's first page for a
folder of 10,000 images, and how much memory the server holds.

Writes N small PNGs (default 10,000, 64x64, in 10 class folders) under a
temporary folder, saves a keras-amb model (an untrained resnet_tiny ABN at
64 px unless --model is given), starts `keras-amb review MODEL --images DIR`
(or `--dataset DIR`, labelled: the train split) as a separate process, and
measures, from the moment it is started:

- until the first page of the gallery (24 images, the JSON and every
  thumbnail) has been served;
- until every image is scored (the order is final);

and the server's resident memory (VmRSS) at both moments and its peak
(VmHWM).

    python benchmarks/review.py [--images 10000] [--model RUN] [--labelled]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request


def write_images(root, count, classes=10, size=64):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        folder = os.path.join(root, f"class{i % classes}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.png"), compress_level=1)


def tiny_model(path, classes=10):
    code = (
        "import numpy as np; from keras_amb.models import AttentionBranchNetwork as A; "
        f"m = A(num_classes={classes}, backbone='resnet_tiny', image_size=64, "
        f"class_names=[f'class{{i}}' for i in range({classes})]); "
        f"m(np.zeros((1, 64, 64, 3), 'float32')); m.save({path!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def get(url):
    with urllib.request.urlopen(url, timeout=600) as response:
        return response.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--model")
    parser.add_argument("--labelled", action="store_true",
                        help="review the folder as a dataset (its train split)")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    work = args.workdir or tempfile.mkdtemp(prefix="keras-amb-review-bench-")
    data = os.path.join(work, "images")
    if not os.path.isdir(data):
        start = time.time()
        write_images(data, args.images)
        print(f"wrote {args.images} PNGs in {time.time() - start:.1f}s to {data}")
    model = args.model or os.path.join(work, "tiny.keras")
    if not os.path.exists(model):
        tiny_model(model)
    exe = os.path.join(os.path.dirname(sys.executable), "keras-amb")
    which = ["--dataset", data] if args.labelled else ["--images", data]
    command = [exe, "review", model, *which, "--port", "0", "--output",
               os.path.join(work, "review")]
    print("$", " ".join(command))
    start = time.time()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env)
    try:
        for line in server.stdout:
            if line.startswith("Reviewing "):
                url = line.split(" at ")[1].split()[0]
                break
        listening = time.time() - start
        page = json.loads(get(url + "api/gallery?page=0&per_page=24"))
        for item in page["items"]:
            get(url + "api/image/" + item["key"] + "/thumbnail.png")
        first_page = time.time() - start
        at_first = memory(server.pid)
        while True:
            summary = json.loads(get(url + "api/info"))["summary"]
            if summary["scored"] == summary["total"]:
                break
            time.sleep(0.5)
        all_scored = time.time() - start
        at_end = memory(server.pid)
        get(url + "api/gallery?page=0&per_page=24")
        print(f"images: {summary['total']} ({'dataset, train split' if args.labelled else '--images'})")
        print(f"listening after {listening:.1f}s")
        print(f"first page (24 images, JSON + thumbnails) after {first_page:.1f}s; "
              f"server RSS {at_first['VmRSS']:.0f} MiB")
        print(f"every image scored after {all_scored:.1f}s "
              f"({summary['total'] / max(all_scored - listening, 1e-9):.0f} images/s after "
              f"start-up); RSS {at_end['VmRSS']:.0f} MiB, peak {at_end['VmHWM']:.0f} MiB")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
