"""A two-layer perceptron (4 -> 16 -> 3) on numpy, with weights from weights.npz."""

import numpy as np

from gateway import MLModel
from gateway.codecs import NumpyCodec
from gateway.types import InferenceRequest, InferenceResponse


class MLPClassifier(MLModel):
    async def load(self) -> bool:
        weights = np.load(self.settings.uri)
        self.w1, self.b1, self.w2, self.b2 = (weights[k] for k in ("w1", "b1", "w2", "b2"))
        self.ready = True
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output("probabilities", probabilities),
                NumpyCodec.encode_output("label", probabilities.argmax(axis=1).astype(np.int64)),
            ],
        )
