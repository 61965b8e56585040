"""The MLflow Model Registry, owned by this package alone: the champion alias, pushing a blessed model, finding the
champion, finding and downloading a version by reference (NAME@ALIAS, NAME/VERSION), and the pyfunc flavour every
registered version is logged with (registry.flavour).

Layer: above core/ and data_schema/, below components/, pipeline/ and serving/, which call it.
"""

from registry.models import (
    CHAMPION_ALIAS,
    SOURCE_TAG,
    TRAINING_STATISTICS_ARTIFACTS,
    ModelNotFound,
    Registry,
    parse_reference,
)

__all__ = ["CHAMPION_ALIAS", "SOURCE_TAG", "TRAINING_STATISTICS_ARTIFACTS", "ModelNotFound", "Registry",
           "parse_reference"]
