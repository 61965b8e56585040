"""BlobExampleGen: the pipeline's ExampleGen over an ingestion committed to blob storage."""

# No `from __future__ import annotations`: TFX reads these type hints as objects to build the component.

import json

from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples

from components.blob_example_gen.executor import import_examples
from core.storage import Storage
from ingestion.manifest import SPLITS


@tfx.dsl.components.component
def BlobExampleGen(examples: tfx.dsl.components.OutputArtifact[Examples],
                   examples_uri: tfx.dsl.components.Parameter[str],
                   content_hash: tfx.dsl.components.Parameter[str]) -> None:
    """Imports the ingestion at `examples_uri`.

    `content_hash` (the manifest's) is this component's input fingerprint: TFX caches on parameters, so
    unchanged data reuses the earlier import and everything downstream of it.
    """
    manifest = import_examples(Storage(), examples_uri, content_hash, examples.uri)
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    # What TFX's own ExampleGens record, so readers need not guess the format.
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    examples.set_string_custom_property("file_format", "tfrecords_gzip")
    examples.set_string_custom_property("content_hash", manifest.content_hash)
    examples.set_string_custom_property("source_uri", manifest.data_uri)
    examples.set_string_custom_property("classes", json.dumps(manifest.classes))
    examples.set_int_custom_property("total", manifest.total)
