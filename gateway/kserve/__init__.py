"""KServe's Python model-server SDK on the gateway: a KServe script runs with one changed import.

    from gateway import kserve                       # was: import kserve
    from gateway.kserve import Model, ModelServer    # was: from kserve import Model, ModelServer

Every module path a KServe script imports from has its twin here:
`gateway.kserve.model`, `.model_server` (`parser`, `args`), `.errors`,
`.protocol.infer_type`, `.protocol.grpc.grpc_predict_v2_pb2`, `.model_repository`,
`.predictor_config`, `.logging`, `.constants.constants`, `.utils.utils`,
`.utils.numpy_codec`. KServe's Kubernetes client (`KServeClient`, the V1beta1 CRD
models) and its inference clients are not part of it.
"""

from . import errors, logging
from .constants import constants
from .model import BaseKServeModel, InferenceModel, InferenceVerb, Model
from .model_repository import ModelRepository
from .model_server import ModelServer
from .predictor_config import PredictorConfig
from .protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
from .utils import utils

__all__ = [
    "BaseKServeModel",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceModel",
    "InferenceVerb",
    "Model",
    "ModelRepository",
    "ModelServer",
    "PredictorConfig",
    "RequestedOutput",
    "constants",
    "errors",
    "logging",
    "model_server",
    "utils",
]
