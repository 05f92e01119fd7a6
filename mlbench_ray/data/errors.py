"""Errors shared by the dataset loaders."""


class DataError(RuntimeError):
    """A dataset that is missing, incomplete or corrupt; the message names the file and the fix."""
