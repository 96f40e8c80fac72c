"""Dashboard pages for the tenant's account (under /app/account/): API keys, webhooks, team.

Keys and webhooks are for admins and owners (anyone else gets a 403 page, and the menu hides
them); everyone sees the team, admins and owners manage it. Every write goes through a service.
A key's or a signing secret's raw value is rendered once, in the response to the POST that made
it, with ``Cache-Control: no-store``: it is never put in a URL, a message, the session or a log.
Another tenant's object is a 404, like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.validators import URLValidator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_POST
from rest_framework.exceptions import APIException, ValidationError

from tenants import services, webhooks
from tenants.auth import SESSION_TENANT_KEY
from tenants.models import (
    ROLE_RANK,
    ApiKey,
    Invitation,
    Membership,
    Role,
    WebhookDelivery,
    WebhookEndpoint,
)
from tenants.selectors import apikey_list, membership_for, memberships_of
from tenants.web import current_membership

ROLE_LABELS = {
    Role.VIEWER: gettext_lazy("Viewer"),
    Role.EDITOR: gettext_lazy("Editor"),
    Role.ADMIN: gettext_lazy("Admin"),
    Role.OWNER: gettext_lazy("Owner"),
}
KIND_LABELS = {
    ApiKey.Kind.SECRET: gettext_lazy("Secret"),
    ApiKey.Kind.PUBLISHABLE: gettext_lazy("Publishable"),
}
DELIVERY_STATUS_LABELS = {
    WebhookDelivery.Status.PENDING: gettext_lazy("Pending"),
    WebhookDelivery.Status.SENDING: gettext_lazy("Sending"),
    WebhookDelivery.Status.SUCCEEDED: gettext_lazy("Succeeded"),
    WebhookDelivery.Status.FAILED: gettext_lazy("Failed"),
}
DELIVERY_LOG_ROWS = 100
MAX_ORIGINS = 20
# What a new publishable key's form suggests; the admin may clear either for no limit.
DEFAULT_STOREFRONT_JOBS_PER_HOUR = 50
DEFAULT_STOREFRONT_JOBS_PER_DAY = 500

View = Callable[..., HttpResponse]


# --- page plumbing -------------------------------------------------------------------------------


def _page(
    request: HttpRequest,
    template: str,
    membership: Membership | None,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        template,
        {
            "membership": membership,
            "memberships": memberships_of(user=request.user),
            "current_role_label": ROLE_LABELS.get(Role(membership.role)) if membership else "",
            **(context or {}),
        },
        status=status,
    )


def _shown_once(response: HttpResponse) -> HttpResponse:
    """A page carrying a secret: no cache may keep it, so Back cannot show it again."""
    add_never_cache_headers(response)  # no-cache, no-store, must-revalidate, private
    return response


def _admins_only(view: View) -> View:
    """Signed in, and admin or owner of the chosen tenant; anyone else gets a 403 page."""

    @wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = current_membership(request)
        if not membership.has_role(Role.ADMIN):
            return _page(
                request,
                "account/forbidden.html",
                membership,
                {"reason": gettext("Only admins and owners can use this page.")},
                status=403,
            )
        return view(request, membership, *args, **kwargs)

    return wrapper


def _mark_invalid(form: forms.Form) -> forms.Form:
    """Pico styles ``aria-invalid`` fields; screen readers announce them."""
    for name in form.errors:
        if name in form.fields:
            form.fields[name].widget.attrs["aria-invalid"] = "true"
    return form


def _apply_service_errors(form: forms.Form, error: ValidationError) -> None:
    """A service's field errors onto the form's fields, the rest onto the form."""
    detail = error.detail
    if isinstance(detail, dict):
        for field, problems in detail.items():
            for problem in problems if isinstance(problems, list) else [problems]:
                form.add_error(field if field in form.fields else None, str(problem))
    else:
        for problem in detail if isinstance(detail, list) else [detail]:
            form.add_error(None, str(problem))
    _mark_invalid(form)


def _problem_text(error: APIException) -> str:
    detail = error.detail
    if isinstance(detail, list | tuple):
        return " ".join(str(item) for item in detail)
    if isinstance(detail, dict):
        return " ".join(str(item) for items in detail.values() for item in items)
    return str(detail)


# --- API keys --------------------------------------------------------------------------------------


def _origin(value: str) -> str:
    """``scheme://host[:port]``, lower-cased as browsers send it in the Origin header."""
    try:
        URLValidator(schemes=["http", "https"])(value)
    except forms.ValidationError:
        raise forms.ValidationError(
            gettext("%(value)s is not an http(s) origin.") % {"value": value}
        ) from None
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise forms.ValidationError(
            gettext("%(value)s is not an origin: write only scheme://host[:port].")
            % {"value": value}
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class ApiKeyForm(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Kind"),
        choices=[
            (ApiKey.Kind.SECRET, gettext_lazy("Secret key (sk_…): for your servers")),
            (ApiKey.Kind.PUBLISHABLE, gettext_lazy("Publishable key (pk_…): for your storefront")),
        ],
        initial=ApiKey.Kind.SECRET,
    )
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=100,
        help_text=gettext_lazy("Where the key is used, e.g. “CI server” or “shop front”."),
    )
    allowed_origins = forms.CharField(
        label=gettext_lazy("Allowed origins"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "https://shop.example.com"}),
        help_text=gettext_lazy("Publishable keys only: one origin per line."),
    )
    allowed_templates = forms.MultipleChoiceField(
        label=gettext_lazy("Allowed templates"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("Publishable keys only: the templates the storefront may use."),
    )

    storefront_jobs_per_hour = forms.IntegerField(
        label=gettext_lazy("Storefront budget: videos per hour"),
        required=False,
        min_value=0,
        max_value=1_000_000,
        initial=DEFAULT_STOREFRONT_JOBS_PER_HOUR,
        help_text=gettext_lazy(
            "Publishable keys only: at most this many videos in any hour, whoever asks. "
            "Empty: no limit."
        ),
    )
    storefront_jobs_per_day = forms.IntegerField(
        label=gettext_lazy("Storefront budget: videos per day"),
        required=False,
        min_value=0,
        max_value=10_000_000,
        initial=DEFAULT_STOREFRONT_JOBS_PER_DAY,
        help_text=gettext_lazy(
            "Publishable keys only: at most this many videos in any 24 hours. Empty: no limit."
        ),
    )

    def __init__(self, *args: Any, templates: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["allowed_templates"].choices = templates

    def clean_allowed_origins(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["allowed_origins"].splitlines()]
        origins = list(dict.fromkeys(_origin(line) for line in lines if line))
        if len(origins) > MAX_ORIGINS:
            raise forms.ValidationError(
                gettext("At most %(count)d origins.") % {"count": MAX_ORIGINS}
            )
        return origins

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("kind") == ApiKey.Kind.PUBLISHABLE:
            if "allowed_origins" in data and not data["allowed_origins"]:
                self.add_error(
                    "allowed_origins",
                    gettext("A publishable key needs at least one origin."),
                )
            if not data.get("allowed_templates"):
                self.add_error(
                    "allowed_templates",
                    gettext("A publishable key needs at least one template."),
                )
        else:  # a secret key is not limited by origin, template or storefront budget
            data["allowed_origins"], data["allowed_templates"] = [], []
            data["storefront_jobs_per_hour"] = data["storefront_jobs_per_day"] = None
        return data


class StorefrontBudgetForm(forms.Form):
    """A publishable key's storefront budget, changed from the keys page."""

    storefront_jobs_per_hour = forms.IntegerField(
        label=gettext_lazy("Per hour"), required=False, min_value=0, max_value=1_000_000
    )
    storefront_jobs_per_day = forms.IntegerField(
        label=gettext_lazy("Per day"), required=False, min_value=0, max_value=10_000_000
    )


def _template_choices(membership: Membership) -> list[tuple[str, str]]:
    from generation.selectors import template_list

    return [(str(t.pk), t.name) for t in template_list(tenant=membership.tenant)]


def _keys_page(
    request: HttpRequest, membership: Membership, form: ApiKeyForm, *, status: int = 200
) -> HttpResponse:
    from generation.models import Template

    keys = list(apikey_list(tenant=membership.tenant).select_related("created_by"))
    template_ids = {t for key in keys for t in key.allowed_template_ids}
    names = {
        str(pk): name
        for pk, name in Template.objects.for_tenant(membership.tenant)
        .filter(pk__in=template_ids)
        .values_list("pk", "name")
    }
    for key in keys:
        key.kind_label = KIND_LABELS.get(key.kind, key.kind)
        key.template_names = [names.get(str(t), str(t)) for t in key.allowed_template_ids]
    return _page(
        request, "account/keys.html", membership, {"keys": keys, "form": form}, status=status
    )


@_admins_only
def keys(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The tenant's keys; POST creates one and shows it, once."""
    templates = _template_choices(membership)
    if request.method != "POST":
        return _keys_page(request, membership, ApiKeyForm(templates=templates))
    form = ApiKeyForm(request.POST, templates=templates)
    if not form.is_valid():
        _mark_invalid(form)
        return _keys_page(request, membership, form, status=400)
    data = form.cleaned_data
    issued = services.apikey_create(
        tenant=membership.tenant,
        kind=data["kind"],
        name=data["name"],
        created_by=request.user,
        allowed_origins=data["allowed_origins"],
        allowed_template_ids=data["allowed_templates"],
        storefront_jobs_per_hour=data["storefront_jobs_per_hour"],
        storefront_jobs_per_day=data["storefront_jobs_per_day"],
    )
    response = _page(
        request,
        "account/key_created.html",
        membership,
        {
            "api_key": issued.api_key,
            "raw_key": issued.raw_key,
            "kind_label": KIND_LABELS[issued.api_key.kind],
        },
        status=201,
    )
    return _shown_once(response)


@require_POST
@_admins_only
def key_budget(request: HttpRequest, membership: Membership, key_id: str) -> HttpResponse:
    """Change a publishable key's storefront budget."""
    api_key = apikey_list(tenant=membership.tenant).filter(pk=key_id).first()
    if api_key is None or not api_key.is_publishable:
        raise Http404("No such publishable key.")
    form = StorefrontBudgetForm(request.POST)
    if not form.is_valid():
        messages.error(
            request,
            gettext("The budget must be a whole number of videos, 0 or more, or empty."),
        )
        return redirect("account-keys")
    services.apikey_set_storefront_budget(
        api_key=api_key,
        jobs_per_hour=form.cleaned_data["storefront_jobs_per_hour"],
        jobs_per_day=form.cleaned_data["storefront_jobs_per_day"],
    )
    messages.success(
        request,
        gettext("The storefront budget of key %(prefix)s… is saved.") % {"prefix": api_key.prefix},
    )
    return redirect("account-keys")


@require_POST
@_admins_only
def key_revoke(request: HttpRequest, membership: Membership, key_id: str) -> HttpResponse:
    api_key = apikey_list(tenant=membership.tenant).filter(pk=key_id).first()
    if api_key is None:
        raise Http404("No such key.")
    services.apikey_revoke(api_key=api_key)
    messages.success(request, gettext("Key %(prefix)s… is revoked.") % {"prefix": api_key.prefix})
    return redirect("account-keys")


# --- webhooks -------------------------------------------------------------------------------------


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        label=gettext_lazy("URL"),
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/reelcast/webhooks"}),
        help_text=gettext_lazy("A public http(s) address of yours that accepts POST requests."),
    )
    description = forms.CharField(label=gettext_lazy("Description"), max_length=300, required=False)
    event_types = forms.MultipleChoiceField(
        label=gettext_lazy("Events"),
        choices=[(event_type, event_type) for event_type in webhooks.EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=gettext_lazy("None chosen: every event."),
    )


def _endpoints(membership: Membership):
    return WebhookEndpoint.objects.for_tenant(membership.tenant)


def _endpoint_or_404(membership: Membership, endpoint_id: str) -> WebhookEndpoint:
    endpoint = _endpoints(membership).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise Http404("No such endpoint.")
    return endpoint


def _webhooks_page(
    request: HttpRequest, membership: Membership, form: WebhookEndpointForm, *, status: int = 200
) -> HttpResponse:
    endpoints = _endpoints(membership).order_by("-created_at")
    return _page(
        request,
        "account/webhooks.html",
        membership,
        {"endpoints": endpoints, "form": form},
        status=status,
    )


@_admins_only
def webhook_list(request: HttpRequest, membership: Membership) -> HttpResponse:
    """The tenant's endpoints; POST adds one and shows its signing secret, once."""
    if request.method != "POST":
        return _webhooks_page(request, membership, WebhookEndpointForm())
    form = WebhookEndpointForm(request.POST)
    if not form.is_valid():
        _mark_invalid(form)
        return _webhooks_page(request, membership, form, status=400)
    try:
        issued = webhooks.webhook_endpoint_create(
            tenant=membership.tenant,
            url=form.cleaned_data["url"],
            description=form.cleaned_data["description"],
            event_types=form.cleaned_data["event_types"],
            created_by=request.user,
        )
    except ValidationError as error:
        _apply_service_errors(form, error)
        return _webhooks_page(request, membership, form, status=400)
    except APIException as error:  # too many endpoints
        form.add_error(None, _problem_text(error))
        return _webhooks_page(request, membership, form, status=409)
    return _shown_once(
        _page(
            request,
            "account/webhook_secret.html",
            membership,
            {"endpoint": issued.endpoint, "secret": issued.secret, "rotated": False},
            status=201,
        )
    )


@_admins_only
def webhook_detail(request: HttpRequest, membership: Membership, endpoint_id: str) -> HttpResponse:
    """One endpoint: its settings, secret rotation, and its delivery log with replay."""
    endpoint = _endpoint_or_404(membership, endpoint_id)
    deliveries = list(
        WebhookDelivery.objects.for_tenant(membership.tenant)
        .filter(endpoint=endpoint)
        .select_related("event")
        .order_by("-created_at")[:DELIVERY_LOG_ROWS]
    )
    for delivery in deliveries:
        delivery.status_label = DELIVERY_STATUS_LABELS.get(delivery.status, delivery.status)
    return _page(
        request,
        "account/webhook_detail.html",
        membership,
        {
            "endpoint": endpoint,
            "deliveries": deliveries,
            "overlap_active": bool(
                endpoint.previous_secret
                and endpoint.previous_secret_expires_at
                and endpoint.previous_secret_expires_at > timezone.now()
            ),
        },
    )


@require_POST
@_admins_only
def webhook_rotate(request: HttpRequest, membership: Membership, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(membership, endpoint_id)
    # "at once" is for a leaked secret; otherwise the old one keeps signing for the overlap
    overlap_s = 0 if request.POST.get("at_once") else None
    issued = webhooks.webhook_secret_rotate(endpoint=endpoint, overlap_s=overlap_s)
    return _shown_once(
        _page(
            request,
            "account/webhook_secret.html",
            membership,
            {
                "endpoint": issued.endpoint,
                "secret": issued.secret,
                "rotated": True,
                "at_once": overlap_s == 0,
            },
        )
    )


@require_POST
@_admins_only
def webhook_toggle(request: HttpRequest, membership: Membership, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(membership, endpoint_id)
    enable = request.POST.get("enabled") == "1"
    webhooks.webhook_endpoint_update(endpoint=endpoint, enabled=enable)
    messages.success(
        request,
        gettext("The endpoint is enabled.") if enable else gettext("The endpoint is disabled."),
    )
    return redirect("account-webhook", endpoint_id=endpoint.pk)


@require_POST
@_admins_only
def webhook_delete(request: HttpRequest, membership: Membership, endpoint_id: str) -> HttpResponse:
    endpoint = _endpoint_or_404(membership, endpoint_id)
    webhooks.webhook_endpoint_delete(endpoint=endpoint)
    messages.success(request, gettext("The endpoint and its delivery log are deleted."))
    return redirect("account-webhooks")


@require_POST
@_admins_only
def webhook_replay(request: HttpRequest, membership: Membership, delivery_id: str) -> HttpResponse:
    delivery = (
        WebhookDelivery.objects.for_tenant(membership.tenant)
        .select_related("endpoint", "event")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:
        raise Http404("No such delivery.")
    try:
        webhooks.webhook_replay(delivery=delivery)
    except APIException as error:  # the endpoint is disabled
        messages.error(request, _problem_text(error))
    else:
        messages.success(
            request,
            gettext("Event %(event)s is queued for delivery again.") % {"event": delivery.event_id},
        )
    return redirect("account-webhook", endpoint_id=delivery.endpoint_id)


# --- team ------------------------------------------------------------------------------------------


def _role_choices(up_to: str) -> list[tuple[str, Any]]:
    return [
        (role, label) for role, label in ROLE_LABELS.items() if ROLE_RANK[role] <= ROLE_RANK[up_to]
    ]


class InviteForm(forms.Form):
    invitee = forms.CharField(
        label=gettext_lazy("Username or email"),
        max_length=254,
        help_text=gettext_lazy("The person needs a Reelcast account to accept."),
    )
    role = forms.ChoiceField(label=gettext_lazy("Role"), initial=Role.VIEWER)

    def __init__(self, *args: Any, up_to: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(up_to)


def _team_page(
    request: HttpRequest,
    membership: Membership,
    invite_form: InviteForm | None = None,
    *,
    status: int = 200,
) -> HttpResponse:
    can_manage = membership.has_role(Role.ADMIN)
    members = list(
        Membership.objects.for_tenant(membership.tenant)
        .select_related("user")
        .order_by("created_at")
    )
    for member in members:
        member.role_label = ROLE_LABELS[Role(member.role)]
        member.manageable = (
            can_manage and ROLE_RANK[Role(member.role)] <= ROLE_RANK[Role(membership.role)]
        )
    invitations: list[Invitation] = []
    if can_manage:
        now = timezone.now()
        invitations = [
            invitation
            for invitation in Invitation.objects.for_tenant(membership.tenant)
            .filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now)
            .select_related("invited_by")
            .order_by("-created_at")
        ]
        for invitation in invitations:
            invitation.role_label = ROLE_LABELS[Role(invitation.role)]
    return _page(
        request,
        "account/team.html",
        membership,
        {
            "members": members,
            "invitations": invitations,
            "can_manage": can_manage,
            "role_choices": _role_choices(membership.role),
            "invite_form": invite_form
            or (InviteForm(up_to=membership.role) if can_manage else None),
        },
        status=status,
    )


def _member_or_404(membership: Membership, member_id: int) -> Membership:
    member = Membership.objects.for_tenant(membership.tenant).filter(pk=member_id).first()
    if member is None:
        raise Http404("No such member.")
    return member


@login_required
def team(request: HttpRequest) -> HttpResponse:
    """Everyone sees the team; admins and owners manage it."""
    return _team_page(request, current_membership(request))


@require_POST
@_admins_only
def member_role(request: HttpRequest, membership: Membership, member_id: int) -> HttpResponse:
    member = _member_or_404(membership, member_id)
    role = request.POST.get("role", "")
    if role not in Role.values:
        messages.error(request, gettext("Choose a role."))
        return redirect("account-team")
    try:
        changed = services.membership_role_change(membership=member, role=role, actor=membership)
    except APIException as error:
        messages.error(request, _problem_text(error))
    else:
        messages.success(
            request,
            gettext("%(user)s is now %(role)s.")
            % {"user": changed.user.get_username(), "role": ROLE_LABELS[Role(changed.role)]},
        )
    return redirect("account-team")


@require_POST
@_admins_only
def member_remove(request: HttpRequest, membership: Membership, member_id: int) -> HttpResponse:
    member = _member_or_404(membership, member_id)
    try:
        services.membership_remove(membership=member, actor=membership)
    except APIException as error:
        messages.error(request, _problem_text(error))
        return redirect("account-team")
    if member.pk == membership.pk:  # left the tenant: nothing here to show them any more
        request.session.pop(SESSION_TENANT_KEY, None)
        messages.success(request, gettext("You left %(tenant)s.") % {"tenant": member.tenant.name})
        return redirect("dashboard")
    messages.success(
        request, gettext("%(user)s was removed.") % {"user": member.user.get_username()}
    )
    return redirect("account-team")


@require_POST
@_admins_only
def invite(request: HttpRequest, membership: Membership) -> HttpResponse:
    """Invite someone; the page that answers shows the link to send them, once."""
    form = InviteForm(request.POST, up_to=membership.role)
    if not form.is_valid():
        _mark_invalid(form)
        return _team_page(request, membership, form, status=400)
    try:
        issued = services.invitation_create(
            tenant=membership.tenant,
            invitee=form.cleaned_data["invitee"],
            role=form.cleaned_data["role"],
            actor=membership,
        )
    except ValidationError as error:
        _apply_service_errors(form, error)
        return _team_page(request, membership, form, status=400)
    except APIException as error:
        form.add_error(None, _problem_text(error))
        return _team_page(request, membership, form, status=403)
    # the public address, as in every link Reelcast hands out, not whatever Host this request had
    link = settings.REELCAST_PUBLIC_URL + reverse("account-invitation", args=[issued.token])
    return _shown_once(
        _page(
            request,
            "account/invited.html",
            membership,
            {
                "invitation": issued.invitation,
                "role_label": ROLE_LABELS[Role(issued.invitation.role)],
                "link": link,
            },
            status=201,
        )
    )


@require_POST
@_admins_only
def invitation_revoke(
    request: HttpRequest, membership: Membership, invitation_id: str
) -> HttpResponse:
    invitation = Invitation.objects.for_tenant(membership.tenant).filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation.")
    try:
        services.invitation_revoke(invitation=invitation, actor=membership)
    except APIException as error:
        messages.error(request, _problem_text(error))
    else:
        messages.success(
            request,
            gettext("The invitation for %(invitee)s is withdrawn.")
            % {"invitee": invitation.invitee},
        )
    return redirect("account-team")


@login_required
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The invitee's side: see who invites them to what, and accept (POST)."""
    found = services.invitation_pending(token=token)
    # the invitee may not belong to any tenant yet (then there is no current membership)
    membership = membership_for(
        user=request.user, tenant_id=request.session.get(SESSION_TENANT_KEY)
    )
    if found is None:
        return _shown_once(
            _page(request, "account/invitation.html", membership, {"invalid": True}, status=404)
        )
    if request.method == "POST":
        try:
            joined = services.invitation_accept(token=token, user=request.user)
        except APIException as error:
            messages.error(request, _problem_text(error))
            return redirect("account-invitation", token=token)
        request.session[SESSION_TENANT_KEY] = str(joined.tenant_id)
        messages.success(request, gettext("You joined %(tenant)s.") % {"tenant": found.tenant.name})
        return redirect("dashboard")
    is_invitee = services.invitation_is_for(invitation=found, user=request.user)
    return _shown_once(
        _page(
            request,
            "account/invitation.html",
            membership,
            {
                "invitation": found,
                "role_label": ROLE_LABELS[Role(found.role)],
                "is_invitee": is_invitee,
            },
        )
    )
