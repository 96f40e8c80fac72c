"""An optional cloud moderation service, for the categories no local model can score.

No package ships an offline violence/gore (or hate symbol, self-harm) image model, so those
categories are either sent to human review by policy or, where an operator chooses to, scored by
a cloud service. Sending a tenant's frames to a third party is the operator's decision: it is off
unless ``REELCAST_MODERATION_PROVIDER`` names a provider class, and nothing else in moderation
ever leaves the machine.

Settings::

    REELCAST_MODERATION_PROVIDER = "moderation.providers.AzureContentSafetyProvider"  # "" = off
    REELCAST_MODERATION_PROVIDER_URL = "https://<resource>.cognitiveservices.azure.com"
    REELCAST_MODERATION_PROVIDER_KEY = "<key>"
    REELCAST_MODERATION_PROVIDER_TIMEOUT_S = 10

A provider is any class with ``name``, ``categories`` and ``moderate_images(images)``, built
with ``(url=..., key=..., timeout_s=...)``. ``AzureContentSafetyProvider`` speaks Azure AI
Content Safety's ``image:analyze`` REST call (API version 2023-10-01) with the standard library's
HTTP client, so no vendor SDK is needed.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from django.conf import settings
from django.utils.module_loading import import_string
from PIL import Image


class ProviderError(Exception):
    """The provider could not give an answer (network, status, malformed reply)."""


@dataclass(frozen=True)
class ProviderResult:
    """Per-category scores (0–1, strongest over the images) and what was seen where."""

    scores: dict[str, float]
    findings: list[dict] = field(default_factory=list)


class ModerationProvider(Protocol):
    name: str
    categories: frozenset[str]  # the categories its scores cover

    def moderate_images(
        self, images: Sequence[np.ndarray], indices: Sequence[int]
    ) -> ProviderResult: ...


def get_provider() -> ModerationProvider | None:
    """The configured provider, or None (the default: nothing is sent anywhere)."""
    path = getattr(settings, "REELCAST_MODERATION_PROVIDER", "")
    if not path:
        return None
    cls = import_string(path)
    return cls(
        url=getattr(settings, "REELCAST_MODERATION_PROVIDER_URL", ""),
        key=getattr(settings, "REELCAST_MODERATION_PROVIDER_KEY", ""),
        timeout_s=float(getattr(settings, "REELCAST_MODERATION_PROVIDER_TIMEOUT_S", 10)),
    )


def _jpeg(image: np.ndarray, max_side: int = 1024) -> bytes:
    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class AzureContentSafetyProvider:
    """Azure AI Content Safety, image analysis. Severity 0–6 (four levels) becomes a 0–1 score."""

    name = "azure_content_safety"
    API_VERSION = "2023-10-01"
    CATEGORY_MAP = {
        "Sexual": "sexual",
        "Violence": "violence_gore",
        "Hate": "hate",
        "SelfHarm": "self_harm",
    }
    categories = frozenset(CATEGORY_MAP.values())
    MAX_SEVERITY = 6

    def __init__(self, *, url: str, key: str, timeout_s: float = 10.0):
        if not url or not key:
            raise ProviderError("The moderation provider needs a URL and a key.")
        if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ProviderError("The moderation provider URL must use HTTPS.")
        self.url = url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def _analyze(self, image: np.ndarray) -> dict[str, float]:
        body = json.dumps(
            {
                "image": {"content": base64.b64encode(_jpeg(image)).decode("ascii")},
                "categories": list(self.CATEGORY_MAP),
                "outputType": "FourSeverityLevels",
            }
        ).encode()
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            f"{self.url}/contentsafety/image:analyze?api-version={self.API_VERSION}",
            data=body,
            method="POST",
            headers={"Ocp-Apim-Subscription-Key": self.key, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                reply = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ProviderError(f"{self.name}: HTTP {error.code}") from error
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as error:
            raise ProviderError(f"{self.name}: {error}") from error
        try:
            analysis = reply["categoriesAnalysis"]
            return {
                self.CATEGORY_MAP[item["category"]]: min(1.0, item["severity"] / self.MAX_SEVERITY)
                for item in analysis
                if item["category"] in self.CATEGORY_MAP
            }
        except (KeyError, TypeError) as error:
            raise ProviderError(f"{self.name}: unexpected reply") from error

    def moderate_images(
        self, images: Sequence[np.ndarray], indices: Sequence[int]
    ) -> ProviderResult:
        scores: dict[str, float] = {}
        findings: list[dict] = []
        for image, index in zip(images, indices, strict=True):
            for category, score in self._analyze(image).items():
                scores[category] = max(scores.get(category, 0.0), score)
                if score > 0:
                    findings.append(
                        {
                            "frame": index,
                            "model": self.name,
                            "label": category,
                            "score": round(score, 4),
                            "box": None,
                            "category": category,
                        }
                    )
        return ProviderResult(scores=scores, findings=findings)
