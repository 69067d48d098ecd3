"""The environment a runtime process started by a test inherits."""

from __future__ import annotations

import os

from config import Settings

# Read by the runtime besides its settings: boto3's region (the AWS cloud tools) and the
# OpenTelemetry SDK's own variables.
OTHER_VARIABLES = frozenset({"AWS_DEFAULT_REGION"})
OTHER_PREFIXES = ("OTEL_",)


def clean_environment() -> dict[str, str]:
    """This process's environment without any variable the runtime reads: every settings
    field (CONTRACT §2, upper-cased as its variable) and the others above."""
    known = {name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    return {
        k: v for k, v in os.environ.items() if k not in known and not k.startswith(OTHER_PREFIXES)
    }
