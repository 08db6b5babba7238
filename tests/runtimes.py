"""Runtimes the tests serve (each through real worker processes)."""

import asyncio
import os

from gateway import MLModel
from gateway.types import InferenceRequest, InferenceResponse, ResponseOutput


class Echo(MLModel):
    """Returns every input unchanged, under the same name (any datatype, any shape)."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(
            model_name=self.name,
            parameters={"echoed": len(payload.inputs)},
            outputs=[
                ResponseOutput(name=i.name, shape=i.shape, datatype=i.datatype, parameters=i.parameters, data=i.data)
                for i in payload.inputs
            ],
        )


class Failing(MLModel):
    """Raises inside predict, with a message the client must see."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise ValueError("this model always fails: bad luck")


class BrokenLoad(MLModel):
    async def load(self) -> bool:
        raise FileNotFoundError("weights.bin is missing")


class FalseLoad(MLModel):
    async def load(self) -> bool:
        return False


class Sleepy(MLModel):
    """Sleeps for the number of seconds in its input, then answers with its process id."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        await asyncio.sleep(float(payload.inputs[0].data.ravel()[0]))
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(name="pid", shape=[1], datatype="INT64", data=[os.getpid()])])


class Versioned(MLModel):
    """Answers with its own version, so tests can tell versions apart."""

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(
            model_name=self.name, outputs=[ResponseOutput(name="version", shape=[1], datatype="BYTES", data=[self.version])]
        )
