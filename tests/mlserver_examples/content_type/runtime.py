# MLServer's docs/examples/content-type/README.md, "Echo Inference Runtime", unchanged
# but for `mlserver` -> `gateway` in the imports.
import json

from gateway import MLModel
from gateway.codecs import DecodedParameterName
from gateway.types import InferenceRequest, InferenceResponse, ResponseOutput

_to_exclude = {"parameters": {DecodedParameterName, "headers"}, "inputs": {"__all__": {"parameters": {DecodedParameterName, "headers"}}}}


class EchoRuntime(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        outputs = []
        for request_input in payload.inputs:
            decoded_input = self.decode(request_input)
            print(f"------ Encoded Input ({request_input.name}) ------")
            as_dict = request_input.dict(exclude=_to_exclude)  # type: ignore
            print(json.dumps(as_dict, indent=2))
            print(f"------ Decoded input ({request_input.name}) ------")
            print(decoded_input)

            outputs.append(ResponseOutput(name=request_input.name, datatype=request_input.datatype, shape=request_input.shape, data=request_input.data))

        return InferenceResponse(model_name=self.name, outputs=outputs)
