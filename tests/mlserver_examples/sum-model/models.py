# MLServer's docs/user-guide/custom.md, "Simplified interface", unchanged but for `mlserver` ->
# `gateway` in the imports; the snippet leaves out `import numpy as np` and the model it loads,
# which are added here.
from typing import List

import numpy as np

from gateway import MLModel
from gateway.codecs import decode_args


class MyCustomRuntime(MLModel):
    async def load(self) -> bool:
        # TODO: Replace for custom logic to load a model artifact
        self._model = load_my_custom_model()
        return True

    @decode_args
    async def predict(self, questions: List[str], context: List[str]) -> np.ndarray:
        # TODO: Replace for custom logic to run inference
        return self._model.predict(questions, context)


class WordOverlap:
    """For each question, how many of its words its context holds."""

    def predict(self, questions, context):
        return np.array([len(set(q.split()) & set(c.split())) for q, c in zip(questions, context)])


def load_my_custom_model():
    return WordOverlap()
