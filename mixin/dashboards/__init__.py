"""The Grafana dashboards, built with grafana-foundation-sdk from the mixin's `Config`.

Written by ``python -m mixin`` (``make mixin``) into grafana/dashboards/. The output is
deterministic (sorted keys, fixed panel ids and uids), so the committed JSON can be compared
with a fresh generation; tests/test_mixin.py and tests/test_dashboards.py fail on any difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from mixin.config import Config
from mixin.dashboards.accuracy import prediction_accuracy
from mixin.dashboards.activity import whale_activity
from mixin.dashboards.health import exporter_health

DASHBOARDS: dict[str, Callable[[Config], db.Dashboard]] = {
    "whale-activity.json": whale_activity,
    "prediction-accuracy.json": prediction_accuracy,
    "exporter-health.json": exporter_health,
}


def render(builder: db.Dashboard) -> str:
    """Serialise a dashboard deterministically, numbering panels in layout order."""
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all(config: Config) -> dict[str, str]:
    """File name -> JSON of every dashboard."""
    return {name: render(build(config)) for name, build in DASHBOARDS.items()}
