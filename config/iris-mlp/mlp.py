"""A two-layer perceptron (4 -> 16 -> 3) on numpy, with weights from weights.npz.

The weights were trained on scikit-learn's iris data set by `examples/train.py --iris-mlp`;
`parameters.extra.classes` names the classes in the order of the output columns.
"""

import numpy as np

from gateway import MLModel
from gateway.codecs import NumpyCodec
from gateway.types import InferenceRequest, InferenceResponse, ResponseOutput


class MLPClassifier(MLModel):
    async def load(self) -> bool:
        weights = np.load(self.settings.uri)
        self.w1, self.b1, self.w2, self.b2 = (weights[k] for k in ("w1", "b1", "w2", "b2"))
        self.classes = np.array([name.encode() for name in self.settings.parameters.extra["classes"]], dtype=object)
        if len(self.classes) != self.b2.shape[0]:
            raise ValueError(f"extra.classes names {len(self.classes)} classes, the weights have {self.b2.shape[0]}")
        self.ready = True
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        hidden = np.maximum(x @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        labels = self.classes[probabilities.argmax(axis=1)].reshape(-1, 1)  # one column, as the metadata says
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output("probabilities", probabilities),
                ResponseOutput(name="label", datatype="BYTES", shape=list(labels.shape), data=labels),
            ],
        )
