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
    # The character (or product) description injected identically into every shot prompt, so
    # the same person looks the same in every shot; may hold {placeholders}.
    character = models.TextField(blank=True)
    product = models.TextField(blank=True)
    # A style preset: {"preset": "<builtin or tenant preset name>"} or inline
    # {"camera", "lighting", "look", "negative"}.
    style = models.JSONField(default=dict, blank=True)
    # Reference images stored with the version: [{"role": "character"|"product", "key", "sha256"}]
    assets = models.JSONField(default=list, blank=True)
    # Names or shows a real person: every job needs a valid consent record. Set automatically
    # when the template has a name or image variable or a character reference image.
    requires_consent = models.BooleanField(default=False)
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


class StylePreset(TenantOwnedModel):
    """A tenant's named look (camera, lighting, look, negative prompt) templates refer to."""

    name = models.SlugField(max_length=64)
    camera = models.CharField(max_length=300, blank=True)
    lighting = models.CharField(max_length=300, blank=True)
    look = models.CharField(max_length=300, blank=True)
    negative = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="stylepreset_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ConsentRecord(TenantOwnedModel):
    """Consent to make videos of one real person. A job that names or shows a person runs only
    under a consent that is granted, unexpired, unrevoked and in scope; a minor's consent must
    come from a parent or guardian. Revoking it stops new jobs and expires that person's videos.
    """

    class Relationship(models.TextChoices):
        SELF = "self", "The person themself"
        PARENT = "parent", "Parent"
        GUARDIAN = "guardian", "Legal guardian"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subject_name = models.CharField(max_length=64)  # the person shown, as named in videos
    subject_ref = models.CharField(max_length=128, blank=True)  # the tenant's id for them
    subject_is_minor = models.BooleanField(default=False)
    consented_by = models.CharField(max_length=200)
    relationship = models.CharField(max_length=16, choices=Relationship.choices)
    # Template ids the consent covers; empty: every template of the tenant.
    scope_templates = models.JSONField(default=list, blank=True)
    scope_note = models.CharField(max_length=500, blank=True)
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    evidence_key = models.CharField(max_length=300, blank=True)
    evidence_sha256 = models.CharField(max_length=64, blank=True)
    evidence_type = models.CharField(max_length=64, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=300, blank=True)
    videos_expired_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "subject_ref"], name="consent_tenant_ref"),
            models.Index(fields=["tenant", "-created_at"], name="consent_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"consent for {self.subject_name}"


class Batch(TenantOwnedModel):
    """A group of jobs made from one request: a roster (one job per valid row) or A/B variants
    (one job per variant, same values and seed). Rows become jobs in chunks; each row's job has
    an idempotency key, so a chunk that runs twice creates nothing twice.
    """

    class Kind(models.TextChoices):
        ROSTER = "roster", "Roster"
        VARIANTS = "variants", "A/B variants"

    class State(models.TextChoices):
        CREATING = "creating", "Creating jobs"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="batches")
    template_version = models.ForeignKey(
        TemplateVersion, on_delete=models.PROTECT, related_name="batches"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.CREATING)
    source_key = models.CharField(max_length=300, blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=8, blank=True)
    source_encoding = models.CharField(max_length=32, blank=True)
    columns = models.JSONField(default=dict, blank=True)  # column header -> variable name
    options = models.JSONField(default=dict, blank=True)  # request options applied to each row
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)  # chunk cursor: rows looked at
    accepted_rows = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)  # [{"row", "reasons": {field: msg}}]
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="batch_tenant_created"),
            models.Index(fields=["state", "updated_at"], name="batch_state_updated"),
        ]

    def __str__(self) -> str:
        return f"batch {self.id} ({self.kind}, {self.state})"


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
    tags = models.JSONField(default=dict, blank=True)  # category -> [tag], from the compiler
    style = models.JSONField(default=dict, blank=True)  # the resolved style preset used
    consent = models.ForeignKey(
        ConsentRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    has_photo = models.BooleanField(default=False)  # an end user's photo is among the inputs
    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    batch_row = models.PositiveIntegerField(null=True, blank=True)  # roster row or variant no.
    variant_label = models.CharField(max_length=64, blank=True)

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
            models.Index(fields=["batch", "state"], name="job_batch_state"),
        ]
        constraints = [
            # A roster row (or variant) makes at most one job, however often its chunk runs.
            models.UniqueConstraint(fields=["batch", "batch_row"], name="job_unique_batch_row"),
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


class JobTag(TenantOwnedModel):
    """One search tag of a job (the asset library): category and value, from the compiler."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="tag_rows")
    category = models.CharField(max_length=16)
    value = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job", "category", "value"], name="jobtag_unique_per_job"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "value"], name="jobtag_tenant_value")]

    def __str__(self) -> str:
        return f"{self.category}:{self.value}"


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
        PHOTO_RETENTION = "photo_retention", "An end user's photo reached its retention"
        CONSENT_REVOKED = "consent_revoked", "Consent was revoked"
        CONSENT_EXPIRED = "consent_expired", "Consent expired"

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
