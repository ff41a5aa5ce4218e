"""Package discovery (metadata lives in pyproject.toml).

The library is `keras_amb/`; the command-line application (`cli/`) and the
bundled configs (`configs/`) live at the top of the repository and install
as `keras_amb.cli` and `keras_amb.configs`. Every package under those three
folders is found here, so a new subpackage needs no list kept by hand.
"""

from setuptools import find_packages
from setuptools import setup

MAPPED = {"keras_amb.cli": "cli", "keras_amb.configs": "configs"}

packages = find_packages(include=["keras_amb", "keras_amb.*"])
package_dir = {}
for name, folder in MAPPED.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(where=folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
