"""Models of the privacy app, one module per concept (imported here for Django)."""

from privacy.erasure.models import Deletion  # noqa: F401
from privacy.exports.models import DataExport  # noqa: F401
from privacy.retention.models import RetentionPolicy, RetentionRun  # noqa: F401
