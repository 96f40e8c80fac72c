from django.contrib import admin

from tenants.models import ApiKey, Membership, Tenant


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
