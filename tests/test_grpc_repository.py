"""The model repository extension over gRPC (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload)."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.test_worker_plane import write_repository


@pytest.fixture(scope="module")
def client(start_gateway, tmp_path_factory):
    repository = write_repository(tmp_path_factory.mktemp("repository"), {"echo": {"implementation": "tests.runtimes.Echo"}})
    gateway = start_gateway(repository).wait_ready()
    client = grpcclient.InferenceServerClient(gateway.grpc_url)
    yield client
    client.close()


def index(client) -> list[tuple[str, str, str]]:
    return [(m.name, m.state, m.reason) for m in client.get_model_repository_index().models]


def test_unload_then_load_over_grpc(client):
    assert index(client) == [("echo", "READY", "")]
    client.unload_model("echo")
    assert index(client) == [("echo", "UNAVAILABLE", "unloaded")]
    assert not client.is_model_ready("echo")
    client.load_model("echo")
    assert index(client) == [("echo", "READY", "")]
    tensor = grpcclient.InferInput("x", [1], "INT32")
    tensor.set_data_from_numpy(np.array([7], dtype=np.int32))
    assert client.infer("echo", [tensor]).as_numpy("x").tolist() == [7]


def test_repository_errors_over_grpc(client):
    with pytest.raises(Exception, match="StatusCode.NOT_FOUND"):
        client.load_model("nope")
    with pytest.raises(Exception, match="StatusCode.NOT_FOUND"):
        client.unload_model("nope")
    with pytest.raises(Exception, match="StatusCode.INVALID_ARGUMENT.*invalid model name"):
        client.load_model("../echo")
