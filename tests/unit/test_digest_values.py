"""Which images a helm Job sets with their digest apart (docs/images.md, the chart contract for digests, form 2):
those of the components whose release, read just before the Job, declares the digest value."""

from __future__ import annotations

from upgrader.cluster.types import ReleaseInfo
from upgrader.rollout.orchestration.state import CarriedLog, row_spec

ROW = CarriedLog(id=7, upgrade_id=3, customer_id="cust_1", component="api", namespace="customer-1",
                 release_name="customer-1", attempt=1)  # fmt: skip
DIGEST = "sha256:" + "c" * 64


def _release(*declared: str) -> ReleaseInfo:
    return ReleaseInfo("customer-1", "customer-1", "deployed", 2, 2, chart_version="1.6.0",
                       digest_values=frozenset(declared))  # fmt: skip


def test_the_spec_carries_the_components_it_sets_whose_release_declares_the_digest_value():
    also = (("dashboard", "v2.0.0", None), ("exporter", "v1.1.0", DIGEST))
    spec = row_spec(ROW, "upgrade", version="v1.2.0", chart_version="1.6.0", digest=DIGEST, also=also,
                    release=_release("api", "exporter", "mosquitto"))  # fmt: skip
    # mosquitto declares it too, but this Job does not set mosquitto's image
    assert spec.digest_values == ("api", "exporter")


def test_a_release_that_declares_none_or_a_step_that_reads_none_gets_the_pinned_tag_value():
    assert row_spec(ROW, "upgrade", version="v1.2.0", release=_release()).digest_values == ()
    assert row_spec(ROW, "upgrade", version="v1.2.0").digest_values == ()
