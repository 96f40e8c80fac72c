from django.contrib import admin

from tenants.models import ApiKey, Membership, Tenant, WebhookDelivery, WebhookEndpoint


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "status", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("name", "slug")


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "tenant", "kind", "created_at", "last_used_at", "revoked_at")
    list_filter = ("kind",)
    readonly_fields = ("prefix", "key_hash", "created_at", "last_used_at")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "tenant", "enabled", "created_at")
    list_filter = ("enabled",)
    exclude = ("secret", "previous_secret")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "endpoint", "attempt", "status", "status_code", "attempted_at")
    list_filter = ("status",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
