"""Password reset for dashboard users, under /accounts/password-reset/: Django's own views.

1. ``/accounts/password-reset/``: the form asks for an email address; an active account with
   that address and a usable password gets one message with a link. The answer is the same
   page whether or not such an account exists, so the form cannot tell anyone who has an
   account. Requests are rate-limited per client address and per email address
   (``config.middleware.LoginRateLimitMiddleware``, REELCAST_RATE_PASSWORD_RESET).
2. ``/accounts/password-reset/sent/``: "if an account has that address, we sent a link".
3. ``/accounts/password-reset/<uid>/<token>/``: the link; Django moves the token into the
   session and redirects to ``…/<uid>/set-password/``, so the token never sits in a page's
   URL (nor in a Referer header). It works once, for PASSWORD_RESET_TIMEOUT seconds, and stops
   working as soon as the password changes or the user signs in.
4. ``/accounts/password-reset/done/``: "your password was changed; sign in".

Links in the message start at REELCAST_PUBLIC_URL, like download and invitation links, not
at the Host header of the request that asked for them.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "auth/password_reset_form.html"
    email_template_name = "auth/password_reset_email.txt"
    subject_template_name = "auth/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        self.extra_email_context = {"public_url": settings.REELCAST_PUBLIC_URL}
        return super().form_valid(form)


urlpatterns = [
    path("", PasswordResetView.as_view(), name="password_reset"),
    path(
        "sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="auth/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="auth/password_reset_confirm.html",
            success_url=reverse_lazy("password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="auth/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
]
