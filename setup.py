import re
from pathlib import Path

from setuptools import find_packages, setup

# The version lives in kcm_hook/__init__.py alone; read it without importing
# the package, which the isolated build environment cannot do.
__version__ = re.search(r'__version__ = "([^"]+)"',
                        Path(__file__).with_name("kcm_hook").joinpath("__init__.py")
                        .read_text()).group(1)

setup(
    name="kcm-hook",
    version=__version__,
    description="CPU pools for the containers of one Linux host, through OCI hooks",
    packages=find_packages(include=["kcm_hook", "kcm_hook.*"]),
    package_data={"kcm_hook": ["schemas/*.json", "data/*.sh"]},
    python_requires=">=3.9",
    install_requires=["pyroute2>=0.7", "jsonschema>=4", "docker>=6"],
    entry_points={"console_scripts": [
        "kcm-hook = kcm_hook.cli:entry_point",
        "kcm = kcm_hook.cli:entry_point",
        "kcm-runc = kcm_hook.runtime:entry_point",
    ]},
)
