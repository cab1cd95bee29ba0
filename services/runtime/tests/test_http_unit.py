"""Optimistic HTTP writes: a record's `ETag` is its version, and `If-Match` names the version a
change is made on — missing is a 428, unreadable a 400, `*` any version."""

import pytest
from fastapi import HTTPException

from crm_runtime.http import etag, expected_version

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("header", "version"), [('"7"', 7), ('W/"7"', 7), ("7", 7), ("*", None)])
def test_if_match_names_the_version_its_etag_gave(header: str, version: int | None) -> None:
    assert expected_version(header) == version
    if version is not None:
        assert expected_version(etag(version)) == version


@pytest.mark.parametrize(
    ("header", "status"), [(None, 428), ('"seven"', 400), ('"7", "8"', 400), ('"²"', 400)]
)
def test_a_missing_or_unreadable_if_match_is_refused_with_a_message(
    header: str | None, status: int
) -> None:
    with pytest.raises(HTTPException) as refused:
        expected_version(header)
    assert refused.value.status_code == status
    assert "If-Match" in str(refused.value.detail)
