"""A KServe transformer the transformer tests run (tests/kserve/test_transformer.py): it does not
override predict, so its requests go to --predictor_host. preprocess multiplies the rows by 10
(V1 instances, or the V2 InferRequest's first input); postprocess marks the answer."""

import argparse

import numpy as np

from gateway.kserve import InferInput, InferRequest, InferResponse, Model, ModelServer, model_server


class Tenfold(Model):
    def __init__(self, name: str, explainer_host=None):
        super().__init__(name, return_response_headers=True)
        self.explainer_host = explainer_host
        self.ready = True

    def preprocess(self, payload, headers=None):
        if isinstance(payload, dict):
            return {"instances": (np.asarray(payload["instances"]) * 10).tolist()}
        rows = payload.inputs[0].as_numpy() * 10
        tensor = InferInput(payload.inputs[0].name, list(rows.shape), payload.inputs[0].datatype)
        tensor.set_data_from_numpy(rows)
        return InferRequest(payload.model_name, [tensor], request_id=payload.id)

    def postprocess(self, result, headers=None, response_headers=None):
        if isinstance(result, InferResponse):
            result.parameters = {"transformed": True}
            return result
        return {**result, "transformed": True}


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--explainer_host")

if __name__ == "__main__":
    args, _ = parser.parse_known_args()
    ModelServer().start([Tenfold(args.model_name, args.explainer_host)])
