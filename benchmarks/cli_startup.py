"""Start-up time of the command line: `keras-amb --help` and `keras-amb info RUN`.

Each command runs `--repeats` times, each time in a fresh process, after one
warm-up run that fills the file cache. With several `--keras-amb`
executables (say, this checkout's and one of the code before a change) the
runs alternate between them, so that a load that comes and goes on a shared
machine weighs on each alike. Prints a Markdown table of the wall-clock
seconds (mean, median, min, max) and whether the command imported
TensorFlow, with the load average before and after.

    python benchmarks/cli_startup.py RUN [--repeats 10] [--keras-amb EXE ...]

RUN is a run folder or a `.keras` file.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

# Runs a keras-amb script as its console entry point would, then says
# whether TensorFlow was imported.
PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def _env():
    env = dict(os.environ)
    env.pop("KERAS_AMB_DEBUG", None)
    return env


def run_once(argv):
    """Wall-clock seconds of one fresh process running `argv`."""
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=_env(), check=True)
    return time.perf_counter() - start


def imports_tensorflow(argv):
    """Whether the command imports TensorFlow."""
    exe = shutil.which(argv[0]) or argv[0]
    with open(exe, encoding="utf-8", errors="replace") as f:
        shebang = f.readline()
    python = shebang[2:].strip() if shebang.startswith("#!") else sys.executable
    result = subprocess.run([python, "-c", PROBE, exe] + argv[1:], capture_output=True,
                            text=True, env=_env())
    return "tensorflow imported: True" in result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="Run folder or .keras file for `keras-amb info`.")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--keras-amb", action="append", dest="executables",
                        help="A keras-amb executable to time; repeat to compare "
                        "(default: the one beside this Python).")
    args = parser.parse_args()
    executables = args.executables or [os.path.join(os.path.dirname(sys.executable),
                                                    "keras-amb")]
    cases = [(exe, name, [exe] + extra) for exe in executables
             for name, extra in (("--help", ["--help"]), ("info RUN", ["info", args.run]))]
    print(f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
          f"{args.repeats} fresh processes per command, alternating; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for _, _, argv in cases:
        run_once(argv)
    seconds = {id(case): [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            seconds[id(case)].append(run_once(case[2]))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| keras-amb | command | mean s | median s | min s | max s | imports tensorflow |")
    print("|---|---|---|---|---|---|---|")
    for case in cases:
        exe, name, argv = case
        s = seconds[id(case)]
        print(f"| `{exe}` | `{name}` | {statistics.mean(s):.2f} | {statistics.median(s):.2f} | "
              f"{min(s):.2f} | {max(s):.2f} | {'yes' if imports_tensorflow(argv) else 'no'} |")


if __name__ == "__main__":
    main()
