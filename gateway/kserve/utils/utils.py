"""KServe's model-server helpers (`kserve.utils.utils`) that model scripts use.

`get_predict_input`/`get_predict_response` are what KServe's own sklearn/xgboost/
lightgbm servers use to turn a V1 dict or a V2 `InferRequest` into model input and
the model's result back into the matching response. KServe's CloudEvents and
Kubernetes helpers are not here.
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any, Dict, List, Optional, Union

import numpy as np

from ...codecs.pandas import _pandas
from ...protocol.generated.inference_pb2 import InferParameter
from ..constants.constants import PredictorProtocol
from ..errors import InferenceError, InvalidInput
from ..protocol.infer_type import InferOutput, InferRequest, InferResponse
from .numpy_codec import from_np_dtype


def cpu_count() -> int:
    """The CPUs this process may use: the smallest of the host's, its affinity and its cgroup (v1 or v2) quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if sys.platform == "linux":
        quota = _cgroup_cpu_quota()
        if quota is not None and quota >= 1:
            count = min(count, int(quota))
    return count


def _cgroup_cpu_quota() -> Optional[float]:
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        with open("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def is_structured_cloudevent(body: Dict) -> bool:
    """Whether a JSON request body looks like a structured CloudEvent."""
    return all(key in body for key in ("time", "type", "source", "id", "specversion", "data"))


def generate_uuid() -> str:
    return str(uuid.uuid4())


def to_headers(context: Any) -> Dict[str, str]:
    """The invocation (and trailing) metadata of a gRPC ServicerContext as a headers dict."""
    metadata = tuple(context.invocation_metadata())
    if hasattr(context, "trailing_metadata"):
        metadata += tuple(context.trailing_metadata() or ())
    return {item.key: item.value for item in metadata}


def get_predict_input(payload: Union[Dict, InferRequest], columns: Optional[List] = None) -> Any:
    """The model input of a request: for a V1/V2 dict its "instances" (or "inputs") as a numpy
    array, a list of strings, or a DataFrame when they are records; for an `InferRequest` its
    first input as a numpy array (or its strings), or all inputs as a DataFrame when the request
    parameter content_type is "pd"."""
    if isinstance(payload, dict):
        instances = payload["inputs"] if "inputs" in payload else payload["instances"]
        if len(instances) == 0:
            return np.array(instances)
        first = instances[0]
        if isinstance(first, dict) or (isinstance(first, list) and len(first) != 0 and isinstance(first[0], dict)):
            pd = _pandas()
            return pd.concat([pd.DataFrame(instance, columns=columns) for instance in instances], axis=0)
        if isinstance(first, str):
            return instances
        return np.array(instances)
    if isinstance(payload, InferRequest):
        content_type: Optional[str] = ""
        if payload.parameters:
            value = payload.parameters.get("content_type")
            # over gRPC the request parameters are InferParameter messages
            content_type = value.string_param if isinstance(value, InferParameter) else value
        if content_type == "pd":
            return payload.as_dataframe()
        first_input = payload.inputs[0]
        if first_input.datatype == "BYTES" and first_input.data and isinstance(first_input.data[0], str):
            return first_input.data
        return first_input.as_numpy()
    raise InvalidInput(f"unsupported payload type {type(payload)}")


def get_predict_response(payload: Union[Dict, InferRequest], result: Any, model_name: str) -> Union[Dict, InferResponse]:
    """The response to `payload` holding `result` (numpy array, list or DataFrame): {"predictions": ...}
    for a dict request, an `InferResponse` (output "output-0", or one output per DataFrame column,
    binary as the request asks) for an `InferRequest`."""
    pd = sys.modules.get("pandas")  # a DataFrame can exist only if pandas was imported
    is_frame = pd is not None and isinstance(result, pd.DataFrame)
    if isinstance(payload, dict):
        if is_frame:
            return {"predictions": [row.to_dict() for _, row in result.iterrows()]}
        if isinstance(result, np.ndarray):
            return {"predictions": result.tolist()}
        return {"predictions": result}
    if not isinstance(payload, InferRequest):
        raise InvalidInput(f"unsupported payload type {type(payload)}")
    binary = payload.use_binary_outputs
    if is_frame:
        columns = [(str(name), result[name].to_numpy()) for name in result.columns]
    elif isinstance(result, list) and result and isinstance(result[0], str):
        columns = [("output-0", np.array(result, dtype=np.object_))]
    else:
        columns = [("output-0", np.asarray(result))]
    outputs = []
    for name, array in columns:
        datatype = from_np_dtype(array.dtype)
        if datatype is None:
            raise InferenceError(f"output {name!r}: numpy dtype {array.dtype} has no V2 datatype")
        output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
        output.set_data_from_numpy(array, binary_data=binary)
        outputs.append(output)
    return InferResponse(
        model_name=model_name,
        infer_outputs=outputs,
        response_id=payload.id if payload.id else generate_uuid(),
        use_binary_outputs=binary,
        requested_outputs=payload.request_outputs,
    )


def strtobool(val: str) -> bool:
    """'y', 'yes', 't', 'true', 'on', '1' are True; 'n', 'no', 'f', 'false', 'off', '0' False."""
    lowered = val.lower()
    if lowered in ("y", "yes", "t", "true", "on", "1"):
        return True
    if lowered in ("n", "no", "f", "false", "off", "0"):
        return False
    raise ValueError(f"invalid truth value {val!r}")


def is_v2(protocol: Union[str, PredictorProtocol]) -> bool:
    return protocol == PredictorProtocol.REST_V2 or (isinstance(protocol, str) and protocol.lower() == PredictorProtocol.REST_V2.value)


def is_v1(protocol: Union[str, PredictorProtocol]) -> bool:
    return protocol == PredictorProtocol.REST_V1 or (isinstance(protocol, str) and protocol.lower() == PredictorProtocol.REST_V1.value)
