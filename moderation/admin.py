"""Admin for moderation: policies are edited here (through the service, so changes are audited);
decisions, cases and the audit log are read-only (cases are decided through the operator API,
the audit log is append-only and offers no add, change or delete at all)."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from moderation.models import (
    AuditEntry,
    Category,
    ModerationDecision,
    ModerationPolicy,
    ReviewCase,
    rules_errors,
)
from moderation.services import policy_set


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(ReadOnlyAdmin):
    list_display = ("job", "tenant", "stage", "verdict", "created_at")
    list_filter = ("stage", "verdict")
    readonly_fields = [f.name for f in ModerationDecision._meta.fields]


@admin.register(ReviewCase)
class ReviewCaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "job", "stage", "status", "opened_at", "decided_by")
    list_filter = ("status", "stage")
    readonly_fields = [f.name for f in ReviewCase._meta.fields]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "actor_username", "tenant_name", "job_id", "case_id")
    list_filter = ("action",)
    search_fields = ("actor_username", "tenant_name", "reason")
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def get_actions(self, request):
        return {}  # no bulk delete


class ModerationPolicyForm(forms.ModelForm):
    class Meta:
        model = ModerationPolicy
        fields = ("tenant", "preset", "overrides", "minor_context", "review_unchecked")

    def clean_overrides(self):
        overrides = self.cleaned_data.get("overrides") or {}
        errors = rules_errors(overrides)
        if errors:
            raise forms.ValidationError([f"{k}: {v}" for k, v in errors.items()])
        return overrides

    def clean_review_unchecked(self):
        value = self.cleaned_data.get("review_unchecked") or []
        if not isinstance(value, list) or set(value) - set(Category.values):
            raise forms.ValidationError(f"A list of categories: {', '.join(Category.values)}.")
        return value


@admin.register(ModerationPolicy)
class ModerationPolicyAdmin(admin.ModelAdmin):
    form = ModerationPolicyForm
    list_display = ("tenant", "preset", "minor_context", "updated_at", "updated_by")
    list_filter = ("preset", "minor_context")

    def save_model(self, request, obj, form, change) -> None:
        saved = policy_set(
            tenant=obj.tenant,
            preset=obj.preset,
            overrides=obj.overrides,
            minor_context=obj.minor_context,
            review_unchecked=obj.review_unchecked,
            actor=request.user,
        )
        obj.pk = saved.pk

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a tenant without a policy silently falls back: change the preset instead
