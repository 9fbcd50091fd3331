"""Tables and plots of computed results (plain text, Markdown, matplotlib).

Metrics never format numbers; these functions take what the metrics computed.
"""

from torchseg_metrics.reporting.tables import (
    coco_summary,
    panoptic_table,
    per_class_table,
    render_table,
    semantic_table,
)

__all__ = ["coco_summary", "panoptic_table", "per_class_table", "render_table", "semantic_table"]
