"""Installs the ``batchrec`` package from lib/ and the ``batchrec`` console script."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "lib/batchrec/__init__.py").read_text()).group(1)

# pyspark and delta-spark must be a matching pair: Delta's jars break across Spark patch releases.
SPARK_PINS = ["pyspark==4.0.1", "delta-spark==4.0.1"]

setup(
    name="batchrec",
    version=VERSION,
    description="Batch recommendations and user segments on your own Spark, in Amazon Personalize's formats",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # conf/ (base.toml, the overlays, example schemas) is installed as batchrec/conf, so an installed
    # copy finds its configuration outside the checkout (batchrec.config.default_conf_dir).
    package_dir={"": "lib", "batchrec.conf": "conf"},
    packages=find_packages("lib") + ["batchrec.conf"],
    package_data={"batchrec": ["log4j2.properties"], "batchrec.conf": ["*.toml", "schemas/*.json"]},
    install_requires=SPARK_PINS + [
        "pyarrow>=14",
        "numpy>=1.24",
        # sparse products (cg ALS kernel, co-occurrence, item-based scoring), LAPACK's Cholesky (ease)
        "scipy>=1.11",
        # the cg ALS solver's compiled kernel (recipes/als_cg_numba.py); numba pins its numpy range
        "numba>=0.60",
        # pyspark 4.0's Arrow conversions are written for pandas 2 (pandas 3 warns on every batch).
        "pandas>=2.0,<3",
        "boto3>=1.28",
        "click>=8.1",
        "tomli>=2.0; python_version < '3.11'",
    ],
    extras_require={
        # moto's server mode is one of the two DynamoDB-compatible servers the export tests run.
        "test": ["pytest>=7.4", "deltalake>=0.20", "matplotlib>=3.7", "hypothesis>=6.100,<7",
                 "moto[server]==5.2.5",
                 # an independent CG kernel the cg kernels are checked against (tests/test_bench_cg_kernel.py)
                 "implicit==0.7.3"],
        "report": ["matplotlib>=3.7"],
        # bench/bench_train.py's single-node reference (its CPU kernel ships as a wheel)
        "bench": ["implicit==0.7.3"],
    },
    entry_points={"console_scripts": ["batchrec=batchrec.cli:entry_point"]},
)
