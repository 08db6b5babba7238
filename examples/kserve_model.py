"""A KServe custom model served by the gateway: KServe's own script, with one changed import.

    python examples/kserve_model.py --model_name scaler --workers 2 --http_port 8080 --grpc_port 8081

The model holds its weights (here a small array; a real one would read them in load()) and
answers both of KServe's protocols:

- V1: POST /v1/models/scaler:predict  {"instances": [[1, 2, 3, 4]]} -> {"predictions": [[...]]}
- V2: POST /v2/models/scaler/infer (JSON or binary), or gRPC ModelInfer: input FP32 [N, 4],
  output "scaled" FP32 [N, 4].

Each answer is the input times `--factor`, row by row; every answer carries the header
`x-scaled-by` (return_response_headers=True), and the request's `x-request-id` comes back.
"""

import argparse

import numpy as np

from gateway.kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server  # was: from kserve import ...
from gateway.kserve.errors import InvalidInput  # was: from kserve.errors import InvalidInput

FEATURES = 4


class Scaler(Model):
    def __init__(self, name: str, factor: float):
        super().__init__(name, return_response_headers=True)
        self.factor = factor
        self.load()

    def load(self) -> bool:
        self.weights = np.full(FEATURES, self.factor, dtype=np.float32)  # loaded once, shared by the workers
        self.ready = True
        return self.ready

    def scale(self, rows: np.ndarray) -> np.ndarray:
        if rows.ndim != 2 or rows.shape[1] != FEATURES:
            raise InvalidInput(f"expected rows of {FEATURES} features, got shape {list(rows.shape)}")
        return rows * self.weights

    async def predict(self, payload, headers=None, response_headers=None):
        response_headers["x-scaled-by"] = str(self.factor)
        if "x-request-id" in (headers or {}):
            response_headers["x-request-id"] = headers["x-request-id"]
        if isinstance(payload, dict):  # V1: {"instances": [...]}
            instances = payload.get("instances")
            if not isinstance(instances, list):
                raise InvalidInput('expected {"instances": [[...], ...]}')
            return {"predictions": self.scale(np.asarray(instances, dtype=np.float32)).tolist()}
        request: InferRequest = payload  # V2, over REST or gRPC
        scaled = self.scale(request.inputs[0].as_numpy().astype(np.float32))
        output = InferOutput(name="scaled", shape=list(scaled.shape), datatype="FP32")
        output.set_data_from_numpy(scaled)
        return InferResponse(response_id=request.id, model_name=self.name, infer_outputs=[output])


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--factor", type=float, default=2.0, help="what the model multiplies by")

if __name__ == "__main__":
    args, _ = parser.parse_known_args()
    model = Scaler(args.model_name, args.factor)
    ModelServer().start([model])
