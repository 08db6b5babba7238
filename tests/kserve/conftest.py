"""The kserve SDK tests run models in this process: what they log to gateway.metrics stays here."""

import pytest

from gateway import metrics


@pytest.fixture(autouse=True)
def drain_metrics():
    """Model calls record KServe's latency histograms; leave none for other tests to find."""
    yield
    metrics.take_report()
