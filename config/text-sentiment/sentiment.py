"""A lexicon sentiment scorer: each known word adds its weight; the sign gives the label.

Also shows the explain hook: POST .../explain returns each text's scored words."""

import json
import re

import numpy as np

from gateway import MLModel
from gateway.codecs import NumpyCodec, StringCodec
from gateway.types import InferenceRequest, InferenceResponse

WORD = re.compile(r"[a-z']+")


class LexiconSentiment(MLModel):
    async def load(self) -> bool:
        with open(self.settings.uri) as f:
            self.lexicon = json.load(f)
        self.ready = True
        return True

    def _scored_words(self, text: str) -> list[tuple[str, float]]:
        return [(w, self.lexicon[w]) for w in WORD.findall(text.lower()) if w in self.lexicon]

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = self.decode(payload.inputs[0], default_codec=StringCodec)
        scores = np.array([sum(s for _, s in self._scored_words(t)) for t in texts], dtype=np.float32)
        labels = ["positive" if s > 0 else "negative" if s < 0 else "neutral" for s in scores]
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                StringCodec.encode_output("label", labels),
                NumpyCodec.encode_output("score", scores),
            ],
        )

    async def explain(self, payload: InferenceRequest) -> InferenceResponse:
        texts = self.decode(payload.inputs[0], default_codec=StringCodec)
        explanations = [json.dumps(dict(self._scored_words(t))) for t in texts]
        return InferenceResponse(model_name=self.name, outputs=[StringCodec.encode_output("explanation", explanations)])
