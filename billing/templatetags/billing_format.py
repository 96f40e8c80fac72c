"""Formatting for billing pages: money in minor units, milliseconds as seconds."""

from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def money(cents, currency: str = "usd") -> str:
    amount = Decimal(cents or 0) / 100
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "cny": "¥"}.get((currency or "").lower())
    return f"{symbol}{amount:,.2f}" if symbol else f"{amount:,.2f} {currency.upper()}"


@register.filter
def seconds(milliseconds) -> str:
    return f"{(milliseconds or 0) / 1000:,.1f} s"
