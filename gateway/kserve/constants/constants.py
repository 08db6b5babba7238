"""KServe's model-server constants (`kserve.constants.constants`).

The Kubernetes constants of KServe's client SDK (CRD groups, kinds, credentials)
are not here: the gateway has no KServe control-plane client.
"""

import os
from enum import Enum

from ...protocol import CONTENTS_FIELD, HEADER_LENGTH

KSERVE_LOGLEVEL = os.environ.get("KSERVE_LOGLEVEL", "INFO").upper()

KSERVE_MODEL_SERVER_NAME = "kserve"

# the typed-contents field of ModelInferRequest/Response for each datatype (FP16 travels raw only)
GRPC_CONTENT_DATATYPE_MAPPINGS = dict(CONTENTS_FIELD)

EXPLAINER_BASE_URL_FORMAT = "{0}://{1}"


class PredictorProtocol(Enum):
    REST_V1 = "v1"
    REST_V2 = "v2"
    GRPC_V2 = "grpc-v2"


MAX_GRPC_MESSAGE_LENGTH = 8388608

V2_ROUTE_PREFIX = "/v2"
V1_ROUTE_PREFIX = "/v1"

DEFAULT_HTTP_PORT = 8080
DEFAULT_HTTPS_PORT = 8443
DEFAULT_GRPC_PORT = 8081

KSERVE_TLS_CERT_FILE_ENV = "KSERVE_TLS_CERT_FILE"
KSERVE_TLS_KEY_FILE_ENV = "KSERVE_TLS_KEY_FILE"

# the length of the JSON part of a REST body that carries binary tensor data after it
INFERENCE_CONTENT_LENGTH_HEADER = HEADER_LENGTH.lower()


class ModelType(Enum):
    EXPLAINER = 1
    PREDICTOR = 2
