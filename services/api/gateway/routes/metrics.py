from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import MetricsDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(metrics: MetricsDep):
    """Prometheus metrics (scraped inside the cluster; the ingress should not route it)."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
