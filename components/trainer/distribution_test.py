import json

import pytest

from components.trainer.distribution import Cluster, cluster_from_environment, precision_policy, scaled_learning_rate
from core.config import ConfigError


def _tf_config(cluster: dict, task_type: str, index: int) -> dict:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def test_tf_config_from_any_launcher_places_this_process_in_its_cluster():
    two_workers = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}
    assert cluster_from_environment(_tf_config(two_workers, "worker", 0)) == Cluster(2, 0, is_chief=True)
    assert cluster_from_environment(_tf_config(two_workers, "worker", 1)) == Cluster(2, 1, is_chief=False)
    # Kubeflow's TFJob and Vertex AI may name a chief apart from the workers.
    with_chief = {"chief": ["chief:2222"], "worker": ["w0:2222", "w1:2222"]}
    assert cluster_from_environment(_tf_config(with_chief, "chief", 0)) == Cluster(3, 0, is_chief=True)
    assert cluster_from_environment(_tf_config(with_chief, "worker", 0)) == Cluster(3, 1, is_chief=False)


def test_no_tf_config_or_a_cluster_of_one_trains_in_this_process():
    assert cluster_from_environment({}) is None
    assert cluster_from_environment(_tf_config({"worker": ["localhost:2222"]}, "worker", 0)) is None


def test_a_malformed_tf_config_is_named():
    with pytest.raises(ConfigError, match=r"\$TF_CONFIG is not a TF_CONFIG .* or unset it"):
        cluster_from_environment({"TF_CONFIG": '{"cluster": {}}'})


def test_the_learning_rate_grows_with_the_square_root_of_the_replicas():
    assert scaled_learning_rate(0.001, 1) == 0.001
    assert scaled_learning_rate(0.001, 4) == pytest.approx(0.002)


def test_auto_precision_is_float32_without_a_gpu():
    assert precision_policy("auto") == "float32"
    assert precision_policy("mixed_float16") == "mixed_float16"
