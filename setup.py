"""Packages this project's code for the workers of remote Beam runners.

Not needed locally (`./places` runs from the checkout). Dataflow, Flink and Spark workers import
ingestion/, components/, serving/... inside Beam transforms, so a remote run ships them with
`beam.extra_args=["--setup_file=./setup.py"]`. The worker image must already hold the pinned stack of
requirements.txt; install_requires stays empty so a worker never re-resolves it. sample_data/ is left out: it
writes files for ingestion to read, and no worker imports it.
"""

import setuptools

setuptools.setup(
    name="places365-tfx",
    version="0.1.0",
    packages=setuptools.find_packages(include=[
        "core", "data_schema", "ingestion", "registry", "components", "components.*", "pipeline", "serving",
    ]),
    package_data={"data_schema": ["*.txt", "*.pbtxt"], "pipeline": ["*.html", "*.css"], "serving": ["*.html"]},
    python_requires="==3.10.*",
)
