"""The kit's domain errors: each is a problem the user can fix, printed as one line."""


class KitError(Exception):
    """Base class: the message says what was expected, what was found and what to do."""


class DataError(KitError):
    """A dataset archive or folder is missing, corrupt or not in the expected layout."""


class WeightsError(KitError):
    """A weights file is missing, unreadable, or has wrong keys, shapes or dtypes."""


class RubricError(KitError):
    """A rubric file does not match the rubric schema."""


class MarkerError(KitError):
    """Solution markers in a source file are malformed."""


class SubmissionError(KitError):
    """A submission cannot be read or turned into a module."""
