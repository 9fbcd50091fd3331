"""``python -m torchseg_metrics``: the same command line as ``torchseg-metrics``."""

from torchseg_metrics.cli import main

raise SystemExit(main())
