"""The queue position and ETA fields every job representation shares."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from generation import selectors
from generation.models import Job


class JobEtaFields(serializers.Serializer):
    """Where a job is in its queue and when its video should be ready, from measured
    throughput (``selectors.EtaEstimator``): the tenant's API and the storefront's embed view
    show the same numbers."""

    queue_position = serializers.SerializerMethodField(
        help_text="Jobs its pool takes before this one (0: next, or handed to a worker); "
        "null once it left the queue."
    )
    eta_s = serializers.SerializerMethodField(
        help_text="Seconds until the video should be ready, from measured throughput; null "
        "when final or waiting for review."
    )
    eta_at = serializers.SerializerMethodField(help_text="When the video should be ready.")

    def _eta(self, job: Job) -> selectors.JobEta:
        # One estimator per response: a page of jobs reads each pool's load once.
        estimator = self.context.setdefault("eta_estimator", selectors.EtaEstimator())
        known = self.context.setdefault("etas", {})
        if job.pk not in known:
            known[job.pk] = estimator.estimate(job)
        return known[job.pk]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_queue_position(self, job: Job) -> int | None:
        return self._eta(job).queue_position

    @extend_schema_field(serializers.FloatField(allow_null=True))
    def get_eta_s(self, job: Job) -> float | None:
        return self._eta(job).eta_s

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_eta_at(self, job: Job) -> str | None:
        eta_at = self._eta(job).eta_at
        return serializers.DateTimeField().to_representation(eta_at) if eta_at else None
