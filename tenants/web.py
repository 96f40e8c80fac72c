"""What every dashboard page needs: the signed-in user's membership in the chosen tenant."""

from __future__ import annotations

from django.http import Http404, HttpRequest

from tenants.auth import SESSION_TENANT_KEY
from tenants.models import Membership
from tenants.selectors import membership_for


def current_membership(request: HttpRequest) -> Membership:
    """The membership the session has chosen (or the user's first); 404 for none."""
    membership = membership_for(
        user=request.user, tenant_id=request.session.get(SESSION_TENANT_KEY)
    )
    if membership is None:
        raise Http404("You are not a member of any tenant.")
    return membership
