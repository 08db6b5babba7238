"""A runtime as MLServer users write them for tabular models: the request decoded as a DataFrame
(content type "pd" from model-settings.json, which the docs' "Model Metadata" section gives),
a DataFrame back."""

import pandas as pd

from gateway import MLModel
from gateway.types import InferenceRequest, InferenceResponse


class AgeNextYear(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        frame = self.decode_request(payload)
        answer = pd.DataFrame(
            {
                "Greeting": [f"Hello {name}" for name in frame["First Name"]],
                "Age Next Year": frame["Age"] + 1,
                "Score": frame["Age"] / 2.0,
            }
        )
        return self.encode_response(answer)
