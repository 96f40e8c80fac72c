"""The shop every storefront abuse test attacks: its template (with a private variable and
secret prompt text) and a publishable key for it, used from the shop's origin."""

from __future__ import annotations

import pytest

from tests.conftest import visitor_client
from tests.security.storefront.support import (
    SHOP,
    make_publishable_key,
    make_shop,
    make_storefront_template,
)


@pytest.fixture
def shop():
    return make_shop()


@pytest.fixture
def template(shop):
    return make_storefront_template(shop)


@pytest.fixture
def issued(shop, template):
    return make_publishable_key(shop, template)


@pytest.fixture
def storefront(issued):
    """The widget's client: the key from the shop's origin, with a visitor token."""
    return visitor_client(issued.raw_key, SHOP)
