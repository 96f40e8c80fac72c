"""Templates, their versions, and jobs with their recorded state machine."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenants.models import TenantOwnedModel


class Template(TenantOwnedModel):
    """A reusable video recipe. Its content lives in immutable, numbered versions."""

    class Kind(models.TextChoices):
        CHARACTER = "character", "Character"
        PRODUCT = "product", "Product"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="template_unique_slug"),
        ]
        indexes = [models.Index(fields=["tenant", "created_at"], name="template_tenant_created")]

    def __str__(self) -> str:
        return self.name


class TemplateVersion(TenantOwnedModel):
    """One published, never-edited state of a template; jobs pin the version they used.

    ``variables`` is a list of typed variable definitions (see generation/variables.py);
    ``prompt``, ``negative_prompt`` and ``title`` may hold ``{name}`` placeholders.
    """

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    variables = models.JSONField(default=list)
    prompt = models.TextField()
    negative_prompt = models.TextField(blank=True)
    title = models.CharField(max_length=300, blank=True)
    model = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    fps = models.PositiveIntegerField()
    duration_s = models.FloatField()
    # Further canvases the same shots are finished for ("landscape" 16:9, "portrait" 9:16).
    extra_outputs = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="templateversion_unique"),
        ]
        ordering = ["template", "number"]

    def __str__(self) -> str:
        return f"{self.template} v{self.number}"


class Priority(models.IntegerChoices):
    """Priority classes; the scheduler orders queued jobs by them (billing.Plan mirrors it)."""

    BULK = 0, "Bulk"
    STANDARD = 1, "Standard"
    INTERACTIVE = 2, "Interactive"


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    POSTPROCESSING = "postprocessing", "Post-processing"
    MODERATING = "moderating", "Moderating"
    IN_REVIEW = "in_review", "In review"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    BLOCKED = "blocked", "Blocked"


# The only legal moves. running -> queued is the retry after a lost worker.
TRANSITIONS: dict[str, frozenset[str]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELED, JobState.FAILED}),
    JobState.RUNNING: frozenset(
        {JobState.POSTPROCESSING, JobState.FAILED, JobState.CANCELED, JobState.QUEUED}
    ),
    JobState.POSTPROCESSING: frozenset({JobState.MODERATING, JobState.FAILED, JobState.CANCELED}),
    JobState.MODERATING: frozenset(
        {JobState.SUCCEEDED, JobState.IN_REVIEW, JobState.BLOCKED, JobState.FAILED}
    ),
    # in_review -> queued: a request held before generation, approved by an operator.
    JobState.IN_REVIEW: frozenset(
        {JobState.SUCCEEDED, JobState.BLOCKED, JobState.QUEUED, JobState.CANCELED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELED: frozenset(),
    JobState.BLOCKED: frozenset(),
}
TERMINAL_STATES = frozenset(state for state, moves in TRANSITIONS.items() if not moves)
CANCELABLE_STATES = frozenset(
    {JobState.QUEUED, JobState.RUNNING, JobState.POSTPROCESSING, JobState.IN_REVIEW}
)


class Job(TenantOwnedModel):
    """An immutable request (template version + values + geometry + seed) and its state.

    The request fields never change after creation; only the state machine fields, progress
    and outputs do, and only through generation.services.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="jobs")
    template_version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, related_name="jobs"
    )
    values = models.JSONField(default=dict)
    model = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    fps = models.PositiveIntegerField()
    duration_s = models.FloatField()
    seed = models.BigIntegerField()
    title = models.CharField(max_length=300, blank=True)
    shots = models.JSONField(default=list)
    end_user = models.CharField(max_length=128, blank=True)

    priority = models.SmallIntegerField(choices=Priority.choices, default=Priority.STANDARD)
    pool = models.CharField(max_length=64, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    eta_s = models.FloatField(null=True, blank=True)
    model_load_ms = models.PositiveIntegerField(default=0)
    frames_key = models.CharField(max_length=300, blank=True)
    hardware_class = models.CharField(max_length=32, blank=True)

    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=1000, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    device_ms = models.PositiveBigIntegerField(default=0)

    files_deleted_at = models.DateTimeField(null=True, blank=True)
    video_key = models.CharField(max_length=300, blank=True)
    poster_key = models.CharField(max_length=300, blank=True)
    extra_outputs = models.JSONField(default=list, blank=True)
    variant_keys = models.JSONField(default=dict, blank=True)  # orientation -> {video, poster}
    video_bytes = models.PositiveBigIntegerField(default=0)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="job_tenant_created"),
            models.Index(fields=["tenant", "state"], name="job_tenant_state"),
            models.Index(fields=["state", "created_at"], name="job_state_created"),
            models.Index(fields=["state", "pool", "dispatched_at"], name="job_dispatch"),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def can_move_to(self, state: str) -> bool:
        return state in TRANSITIONS[JobState(self.state)]


class JobTransition(models.Model):
    """Append-only history: every state the job entered, when, and why."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    at = models.DateTimeField()
    reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state}"


class IdempotencyKey(TenantOwnedModel):
    """Remembers which job an ``Idempotency-Key`` created, with a fingerprint of the request."""

    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_unique_key"),
        ]

    def __str__(self) -> str:
        return self.key


class WorkerHeartbeat(models.Model):
    """What a worker process is and does, rewritten every few seconds while it lives."""

    worker = models.CharField(max_length=128, unique=True)  # host:pid
    pool = models.CharField(max_length=64)
    host = models.CharField(max_length=128)
    pid = models.PositiveIntegerField()
    hardware_class = models.CharField(max_length=32)
    gpu_name = models.CharField(max_length=128, blank=True)
    gpu_memory_total_mb = models.PositiveIntegerField(default=0)
    gpu_memory_used_mb = models.PositiveIntegerField(default=0)
    loaded_models = models.JSONField(default=list)
    current_job = models.UUIDField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.worker} ({self.pool})"


class PoolLock(models.Model):
    """One row per pool, locked while a dispatcher counts and fills that pool's free slots."""

    name = models.CharField(max_length=64, unique=True)

    def __str__(self) -> str:
        return self.name


class DeletionReceipt(TenantOwnedModel):
    """Proof that a job's files were removed: which, how large, when and why. Append-only."""

    class Reason(models.TextChoices):
        TENANT_REQUEST = "tenant_request", "Deleted on request"
        RETENTION = "retention", "Retention period ended"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job_id = models.UUIDField(db_index=True)  # kept even if the job row is purged later
    reason = models.CharField(max_length=32, choices=Reason.choices)
    files = models.JSONField(default=list)  # [{"key": …, "bytes": …}]
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"receipt {self.id} for job {self.job_id}"


class BrandKit(TenantOwnedModel):
    """A tenant's look, applied to every video it finishes: logo, colours, cards, music, and
    the locale of the visible AI label (which no setting here can remove)."""

    class Corner(models.TextChoices):
        TOP_LEFT = "top-left", "Top left"
        TOP_RIGHT = "top-right", "Top right"
        BOTTOM_LEFT = "bottom-left", "Bottom left"
        BOTTOM_RIGHT = "bottom-right", "Bottom right"

    class Locale(models.TextChoices):
        AUTO = "", "From the video's text"
        ZH_HANS = "zh-Hans", "简体中文"
        EN = "en", "English"

    logo_key = models.CharField(max_length=300, blank=True)
    logo_corner = models.CharField(max_length=16, choices=Corner.choices, default=Corner.TOP_RIGHT)
    logo_size = models.FloatField(default=0.12)
    primary_colour = models.CharField(max_length=7, default="#1F2A44")
    secondary_colour = models.CharField(max_length=7, default="#F2A900")
    intro_text = models.CharField(max_length=200, blank=True)
    intro_seconds = models.FloatField(default=0.0)
    outro_text = models.CharField(max_length=200, blank=True)
    outro_seconds = models.FloatField(default=0.0)
    music_key = models.CharField(max_length=300, blank=True)
    label_locale = models.CharField(max_length=8, choices=Locale.choices, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="brandkit_one_per_tenant")]

    def __str__(self) -> str:
        return f"brand kit of {self.tenant_id}"
